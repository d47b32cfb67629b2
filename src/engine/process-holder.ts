// Who holds a lock file, as far as PID files can tell: a PID plus that process's start time
// (field 22 of /proc/<pid>/stat, in clock ticks since boot). A PID alone lies twice: a killed
// process stays a zombie (state Z) until its parent reaps it, and a reaped PID can be handed to
// an unrelated process. Comparing the start time catches reuse; a zombie holds nothing. Where
// there is no /proc (not Linux), only `kill(pid, 0)` can be asked.

import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  readonly pid: number;
  /** Start time from /proc/<pid>/stat; undefined where /proc cannot tell. */
  readonly startTime: string | undefined;
}

interface ProcStat {
  readonly state: string;
  readonly startTime: string;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function procStat(pid: number): ProcStat | 'gone' | 'unknown' {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return existsProc() ? 'gone' : 'unknown';
    return 'unknown';
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return 'unknown';
  return { state, startTime };
}

function existsProc(): boolean {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

function signalable(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** This process's identity, to write into a lock file. */
export function currentProcess(): ProcessIdentity {
  const stat = procStat(process.pid);
  return { pid: process.pid, startTime: typeof stat === 'object' ? stat.startTime : undefined };
}

/**
 * Whether the process a lock file names still runs: false for a missing PID, a zombie, or a
 * PID now used by a process that started at another time than the one recorded.
 */
export function stillRuns(holder: ProcessIdentity): boolean {
  if (!Number.isInteger(holder.pid) || holder.pid <= 0) return false;
  const stat = procStat(holder.pid);
  if (stat === 'gone') return false;
  if (stat === 'unknown') return signalable(holder.pid);
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return holder.startTime === undefined || holder.startTime === stat.startTime;
}

/** The text a lock file holds: `<pid> <starttime>` (or just the PID where /proc cannot tell). */
export function formatHolder(holder: ProcessIdentity): string {
  return holder.startTime === undefined ? `${holder.pid}\n` : `${holder.pid} ${holder.startTime}\n`;
}

export function parseHolder(text: string): ProcessIdentity | undefined {
  const [pidText, startTime] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (pidText === undefined || pidText === '' || !Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, startTime: startTime === undefined || startTime === '' ? undefined : startTime };
}
