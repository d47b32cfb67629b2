// Runs the real `walrus` command in a child process with a clean WALRUS_* environment and a
// bounded lifetime. Every child is stopped by its own PID; none outlives its test.

import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const WALRUS_BIN = resolve('bin/walrus');

export interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Running {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<Finished>;
  /** Resolves with the first stdout line matching `pattern`; rejects after `timeoutMs` or at exit. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALRUS_')) env[key] = value;
  return { ...env, ...extra };
}

/**
 * Node's own flags for every child: a promise rejection nobody handles ends the child at once
 * (and fails its test), so a regression cannot hide behind a default that only warns.
 */
export const NODE_FLAGS: readonly string[] = ['--unhandled-rejections=strict'];

export interface StartOptions {
  readonly cwd: string;
  readonly env?: Record<string, string>;
  readonly lifetimeMs?: number;
}

export function startWalrus(args: readonly string[], options: StartOptions): Running {
  return startProcess(process.execPath, [...NODE_FLAGS, WALRUS_BIN, ...args], options);
}

/**
 * Any command (a wrapper that sets up namespaces, then runs `walrus`) with the same clean
 * environment, lifetime bound and line waiting as startWalrus. The lifetime's SIGKILL reaches the
 * wrapper only: a wrapper must exec, or its test must stop what the wrapper started by PID.
 */
export function startProcess(file: string, args: readonly string[], options: StartOptions): Running {
  const child = spawn(file, args, {
    cwd: options.cwd,
    env: cleanEnv(options.env ?? {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
  });
  // A hard bound: whatever the test does, the child dies after its lifetime.
  const killer = setTimeout(() => child.kill('SIGKILL'), options.lifetimeMs ?? 30_000);
  const exited = new Promise<Finished>((done) => {
    child.on('exit', (code, signal) => {
      clearTimeout(killer);
      // Let the pipes drain before reporting.
      setImmediate(() => done({ code, signal, stdout: out, stderr: err }));
    });
  });
  const waitForLine = (pattern: RegExp, timeoutMs = 10_000) =>
    new Promise<string>((resolveLine, reject) => {
      const check = () => out.split('\n').find((line) => pattern.test(line));
      const timer = setInterval(() => {
        const line = check();
        if (line !== undefined) {
          clearInterval(timer);
          clearTimeout(limit);
          resolveLine(line);
        }
      }, 20);
      const limit = setTimeout(() => {
        clearInterval(timer);
        reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`));
      }, timeoutMs);
      void exited.then(() => {
        const line = check();
        clearInterval(timer);
        clearTimeout(limit);
        if (line !== undefined) resolveLine(line);
        else reject(new Error(`exited before a line matched ${pattern}; stdout:\n${out}\nstderr:\n${err}`));
      });
    });
  return { child, stdout: () => out, stderr: () => err, exited, waitForLine };
}

export function runWalrusCommand(args: readonly string[], options: { cwd: string; env?: Record<string, string> }): Promise<Finished> {
  return startWalrus(args, { ...options, lifetimeMs: 20_000 }).exited;
}
