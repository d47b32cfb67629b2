// The admin HTTP server: GET (or HEAD) of /metrics, /healthz, /readyz, /api/cluster and the status
// page (/, /status.js, /status.css), nothing else. It shares nothing with the client port but the
// event loop, so it is kept cheap and bounded: small header limit, short header and request
// timeouts (checked every second, so a slowloris client is cut off within a few seconds), a cap
// on connections, and replies built only when asked for.

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** Bounds of the admin server (docs/operations.md). */
export const ADMIN_LIMITS = {
  /** Request header bytes at most; more gets 431. */
  headerBytesMax: 8 * 1024,
  /** A request's headers must all arrive within this. */
  headersTimeoutMs: 5_000,
  /** A whole request must arrive within this. */
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  /** Connections at once; more are closed as they arrive. */
  connectionsMax: 64,
} as const;

export interface AdminRoutes {
  /** The Prometheus text and its content type. */
  metrics(): Promise<{ readonly body: string; readonly contentType: string }>;
  /** Reasons this node is not ready; empty when it is. */
  notReady(): readonly string[];
  /** The /api/cluster object. */
  cluster(): unknown;
}

export interface AdminServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly routes: AdminRoutes;
  readonly log: Logger;
}

/** The status page's files, read once (they ship with the package under static/status/). */
const PAGE_DIR = new URL('../../../../static/status/', import.meta.url);
const PAGE_FILES: Readonly<Record<string, { readonly file: string; readonly type: string }>> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/status.js': { file: 'status.js', type: 'text/javascript; charset=utf-8' },
  '/status.css': { file: 'status.css', type: 'text/css; charset=utf-8' },
};

export class AdminServer {
  private readonly options: AdminServerOptions;
  private readonly server: Server;
  private readonly page = new Map<string, Buffer>();

  constructor(options: AdminServerOptions) {
    this.options = options;
    this.server = createServer(
      {
        maxHeaderSize: ADMIN_LIMITS.headerBytesMax,
        headersTimeout: ADMIN_LIMITS.headersTimeoutMs,
        requestTimeout: ADMIN_LIMITS.requestTimeoutMs,
        keepAliveTimeout: ADMIN_LIMITS.keepAliveTimeoutMs,
        connectionsCheckingInterval: 1_000,
      },
      (request, response) => this.serve(request, response),
    );
    this.server.maxConnections = ADMIN_LIMITS.connectionsMax;
    this.server.on('clientError', (error, socket) => {
      // Oversized headers, a malformed request or a timeout: answer if the socket still can, then close.
      const code = (error as NodeJS.ErrnoException).code;
      const status =
        code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? '408 Request Timeout'
            : '400 Bad Request';
      // end() alone leaves the socket open while the parser still holds it: destroy once the
      // answer is written, or after a second if the peer does not take it.
      if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
      setTimeout(() => socket.destroy(), 1_000).unref();
    });
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ readonly host: string; readonly port: number }> {
    return new Promise((resolve, reject) => {
      const failed = (error: Error): void => reject(error);
      this.server.once('error', failed);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', failed);
        const address = this.server.address() as AddressInfo;
        this.options.log.info({ host: address.address, port: address.port }, 'admin endpoint listening');
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private serve(request: IncomingMessage, response: ServerResponse): void {
    const method = request.method ?? 'GET';
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    response.setHeader('Cache-Control', 'no-store');
    response.setHeader('X-Content-Type-Options', 'nosniff');
    if (method !== 'GET' && method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      this.send(response, method, 405, 'text/plain; charset=utf-8', `${method} is not served here: the admin endpoint is read-only\n`);
      return;
    }
    // Whatever the request carried is not needed: drain it so the connection can be reused.
    request.resume();
    const { routes } = this.options;
    switch (path) {
      case '/metrics':
        routes.metrics().then(
          ({ body, contentType }) => this.send(response, method, 200, contentType, body),
          (error: unknown) => this.failed(response, method, error),
        );
        return;
      case '/healthz':
        this.send(response, method, 200, 'text/plain; charset=utf-8', 'ok\n');
        return;
      case '/readyz': {
        const reasons = routes.notReady();
        if (reasons.length === 0) this.send(response, method, 200, 'text/plain; charset=utf-8', 'ready\n');
        else this.send(response, method, 503, 'text/plain; charset=utf-8', `not ready: ${reasons.join('; ')}\n`);
        return;
      }
      case '/api/cluster':
        try {
          this.send(response, method, 200, 'application/json; charset=utf-8', `${JSON.stringify(routes.cluster(), null, 2)}\n`);
        } catch (error) {
          this.failed(response, method, error);
        }
        return;
    }
    const file = PAGE_FILES[path];
    if (file === undefined) {
      this.send(
        response,
        method,
        404,
        'text/plain; charset=utf-8',
        `no such page: ${path} (try /, /metrics, /healthz, /readyz, /api/cluster)\n`,
      );
      return;
    }
    try {
      let body = this.page.get(file.file);
      if (body === undefined) {
        body = readFileSync(new URL(file.file, PAGE_DIR));
        this.page.set(file.file, body);
      }
      this.send(response, method, 200, file.type, body);
    } catch (error) {
      this.failed(response, method, error);
    }
  }

  private failed(response: ServerResponse, method: string, error: unknown): void {
    this.options.log.warn({ err: error }, 'admin request failed');
    this.send(response, method, 500, 'text/plain; charset=utf-8', `internal error: ${(error as Error).message}\n`);
  }

  private send(response: ServerResponse, method: string, status: number, type: string, body: string | Buffer): void {
    if (response.headersSent || response.destroyed) return;
    response.statusCode = status;
    response.setHeader('Content-Type', type);
    response.setHeader('Content-Length', Buffer.byteLength(body));
    response.end(method === 'HEAD' ? undefined : body);
  }
}
