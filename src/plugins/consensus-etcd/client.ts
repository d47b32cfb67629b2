// The etcd client the consensus-etcd plugin (and its tests) use: the `etcd3` library with its
// fault handling set for a metadata store that must recover quickly. Its defaults keep a host
// unused for 5 s after three failures and back watch reconnections off up to 30 s, so a node
// would stay behind long after etcd came back; here requests fail fast (the command log and the
// lease retry on their own) and watches reconnect within a second.

import { ConsecutiveBreaker, circuitBreaker, ExponentialBackoff, handleWhen, noop } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';

export interface EtcdClientOptions {
  /** `host:port` (or URLs) of etcd's client endpoints. */
  readonly endpoints: readonly string[];
  /** Deadline of each request (not of watches and keepalive streams). */
  readonly requestTimeoutMs: number;
}

export function etcdClient(options: EtcdClientOptions): Etcd3 {
  const { requestTimeoutMs } = options;
  return new Etcd3({
    hosts: [...options.endpoints],
    dialTimeout: requestTimeoutMs,
    // gRPC's own reconnect backoff grows to 2 minutes by default: a node would stay cut off from
    // an etcd that is back. At most a second here.
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000 },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + requestTimeoutMs }),
    faultHandling: {
      // A host that failed three times in a row is skipped for 500 ms (one endpoint: requests fail meanwhile).
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
      global: noop,
      // (etcd3 takes a backoff that it asks for its first step, so a first step is what it gets.)
      watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next(),
    },
  });
}
