// Small service contracts of the built-in plugins that have no richer interface: the client
// protocol server, the rollover monitor and the `walrus` command table. A plugin that starts such
// a service keeps it in a slot bound under its capability, so a kernel (and a test) can see it.

export interface ServiceSlot<T> {
  current: T | undefined;
}

export interface ClientProtocolServer {
  /** The bound address, once listening. */
  readonly bound: { readonly host: string; readonly port: number } | undefined;
  /** Client connections being served now. */
  connections(): number;
  /** Whether this node was taken out of its cluster (it refuses client requests). */
  removed(): boolean;
  close(): Promise<void>;
}

export interface AdminEndpoint {
  /** The bound address of the admin HTTP server. */
  readonly bound: { readonly host: string; readonly port: number };
  close(): Promise<void>;
}

export interface RolloverMonitoring {
  /** The data plane reports a segment full: propose its rollover now instead of at the next check. */
  segmentFull(topic: string, segment: number): void;
  stop(): Promise<void>;
}

export interface CommandInfo {
  readonly name: string;
  readonly summary: string;
}
