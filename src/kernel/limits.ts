// Every bound the kernel enforces, in one place, each named with its unit last.
// Values a user may tune live in the config schema (with these as their bounds); the rest are
// fixed here. Related limits are checked against each other at import time: a broken pair is a
// programming error and crashes at once.

export const limits = {
  /** Largest config file the kernel will read. Config is hand-written; anything bigger is a mistake. */
  configFileBytesMax: 1024 * 1024,
  /** Most plugins one kernel may load (built-in plus custom). */
  pluginsMax: 64,
  /** Longest plugin or capability name. */
  pluginNameLengthMax: 64,
  /** Default and bounds for the time one plugin may take to start. */
  startTimeoutMsDefault: 30_000,
  startTimeoutMsMin: 1,
  startTimeoutMsMax: 10 * 60_000,
  /** Default and bounds for the whole stop sequence (all plugins together). */
  stopTimeoutMsDefault: 10_000,
  stopTimeoutMsMin: 1,
  stopTimeoutMsMax: 10 * 60_000,
  /** Longest array accepted anywhere in the config (cluster.nodes, plugins). */
  configArrayItemsMax: 256,
  /** Longest string accepted anywhere in the config. */
  configStringLengthMax: 4096,
  /** Most problems listed in one CONFIG_INVALID message (the rest are counted). */
  configProblemsListedMax: 50,

  // The WAL engine.
  /** Largest payload of one entry. */
  entryBytesMax: 1024 * 1024 * 1024,
  /** Most entries in one appendBatch (as the original). */
  batchEntriesMax: 2000,
  /** Largest sum of payload bytes in one appendBatch: a batch is written as one unit into one file. */
  batchBytesMax: 1024 * 1024 * 1024,
  /** Most entries one readBatch returns. */
  readBatchEntriesMax: 2000,
  /** Longest topic name, in UTF-8 bytes. */
  topicNameBytesMax: 255,
  /** A data file takes no new records past this size (a record larger than it gets a file of its own). */
  fileBytesMaxDefault: 1024 * 1024 * 1024,
  /** Data files grow in extents of this size (ftruncate), so most writes do not change the file size. */
  fileExtentBytes: 64 * 1024 * 1024,
  /** Records of one tick are packed into a reused buffer of this size and written with one call. */
  stagingBytes: 4 * 1024 * 1024,
  /** Payloads up to this size are copied into the staging buffer; larger ones are written from the caller's buffer. */
  stagingCopyBytesMax: 64 * 1024,
  /**
   * The writer has the OS read this much of the data file past what it has written into the page
   * cache ahead of the writes (StorageFile.prefetch), in steps of prefetchStepBytes: where that is a
   * sparse extent the pages come in clean and zeroed, and the writes only copy into them.
   */
  prefetchAheadBytes: 16 * 1024 * 1024,
  prefetchStepBytes: 1024 * 1024,
  /** Reads fetch this much at once and serve the following entries from memory. */
  readAheadBytes: 256 * 1024,
  /** Read-ahead buffers kept at once (one per topic being read, least recently used dropped first). */
  readAheadBuffersMax: 32,
  /** Under fsync 'none', consumed files are looked at for deletion at most this often. */
  reclaimIntervalMs: 100,
  /** Logs with at least this many bytes allocated on disk are checksummed by a worker thread during recovery. */
  parallelRecoveryBytesMin: 128 * 1024 * 1024,
  /** Recovery reads data files in chunks of this size. */
  recoveryChunkBytes: 4 * 1024 * 1024,
  /** Shortest background sync interval for `fsync: { everyMs }`. */
  fsyncEveryMsMin: 1,
  fsyncEveryMsMax: 60 * 60 * 1000,
  /** Largest `atLeastOnce` persistence interval, in consumed entries. */
  atLeastOnceMax: 1_000_000,

  // The node's storage outage (docs/operations.md): after a failed write or sync the node refuses
  // writes and tries the disk again on a timer.
  /** Time between two attempts to write again after a storage failure. */
  storageRetryMs: 1_000,
  /** Bytes written and synced by one attempt before the engine is reopened (the disk must take at least this). */
  storageProbeBytes: 64 * 1024,
  /** A failed attempt is logged as a warning at most this often (every attempt is logged at debug). */
  storageRetryLogMs: 30_000,

  // The client TCP protocol (frames are a u32 little-endian length, then a UTF-8 body).
  /** Largest request body a node accepts, in bytes (inclusive, as the original's MAX_FRAME_LEN). */
  frameBytesMax: 64 * 1024,
  /** Requests one WalrusClient keeps unanswered on its connection; later ones wait in its queue. */
  clientInFlightMax: 256,
  /** Default time a WalrusClient request may take, from the call to its reply (connecting included). */
  clientTimeoutMsDefault: 10_000,
  /** Largest reply body a WalrusClient buffers: replies have no cap in the protocol, a client needs one. */
  clientReplyBytesMax: 16 * 1024 * 1024,
  /** Bounds of the WalrusClient's wait before reconnecting after failures (doubling from min to max). */
  clientReconnectDelayMsMin: 50,
  clientReconnectDelayMsMax: 2_000,

  // The client TCP protocol server (one listener per node).
  /** Client connections served at once; one more is answered `ERR too many connections` and closed. */
  serverConnectionsMax: 4096,
  /** Requests of one connection being handled or awaiting their turn to be written; at this many the server stops reading it. */
  serverInFlightPerConnection: 128,
  /**
   * Unparsed request bytes plus reply bytes held for one connection (unwritten, or reserved while
   * being computed) above which the server stops reading it. Room for 127 GET or FETCH replies of
   * the largest entry being computed at once (serverReadReplyReserveBytes each).
   */
  serverBufferedBytesPerConnection: 8 * 1024 * 1024,
  /**
   * Reply bytes the server holds for all connections together (ready replies not yet taken by the
   * kernel, plus the reservations of replies being computed); above it, a connection with replies
   * of its own still held is not read until the total is back under. A connection holding none
   * is still served, so one well-behaved client is never locked out by others that do not read.
   */
  serverReplyBytesTotal: 256 * 1024 * 1024,
  /** Held against a connection's budgets while a GET or FETCH reply is being computed: the largest such reply (one entry, whose PUT fit a frame, and its prefix). */
  serverReadReplyReserveBytes: 64 * 1024 + 64,
  /** Payload bytes one MGET or MFETCH reply carries at most (it always carries at least one entry). */
  batchReadBytesMax: 1024 * 1024,
  /** Counted as held while an MGET or MFETCH reply is being computed: its payloads and its header of sizes. */
  serverBatchReadReplyReserveBytes: 1024 * 1024 + 16 * 1024,
  /** Held while any other reply is being computed (OK, EMPTY, an error, STATE, METRICS); corrected to the real size once known. */
  serverOtherReplyReserveBytes: 1024,
  /** Requests one connection may start in one turn of the event loop; past it the connection waits for the next turn, so others and new connections get theirs. */
  serverFramesPerTurn: 64,
  /** Request bytes one connection may start in one turn (at least one request is always started). */
  serverFrameBytesPerTurn: 64 * 1024,
  /**
   * Request bytes all connections together may start in one turn of the event loop; past it the
   * connections with more to do wait, in arrival order, for the next turns. Node (libuv 1.45 and
   * later) accepts one pending connection per turn, so short turns are what lets new clients in
   * during a write flood: at most this much request work, plus its appends, happens between accepts.
   */
  serverFrameBytesPerTurnTotal: 256 * 1024,
  /** A request this small from a connection with nothing in flight starts even when the node's turn budget is used: a new or interactive client does not queue behind a flood. */
  serverSmallFrameBytes: 1024,
  /** Default for protocol.idleTimeoutMs: a connection with no request in flight and no input for this long is closed. */
  protocolIdleTimeoutMsDefault: 300_000,
  /** Default for protocol.frameTimeoutMs: a request frame that started to arrive and is not complete this long after is answered `ERR frame timeout` and the connection closed. */
  protocolFrameTimeoutMsDefault: 30_000,
  /** Upper bound of both protocol timeouts (0 turns one off). */
  protocolTimeoutMsMax: 24 * 60 * 60 * 1000,
  /** The server looks at its connections' timeouts this often at most (a quarter of the shortest timeout, at least this). */
  protocolTimeoutCheckMsMin: 10,
  /** How long close() lets replies in progress finish, and a connection the server ended may linger, before sockets are destroyed. */
  serverCloseGraceMs: 2_000,

  // Node-to-node requests on the internal port (src/node/peer-*.ts, docs/protocol.md).
  /** Largest node-to-node frame body (request or reply), in bytes: a forwarded entry and its head fit many times over. */
  peerFrameBytesMax: 16 * 1024 * 1024,
  /** Largest JSON head of one node-to-node frame, in bytes. */
  peerHeadBytesMax: 64 * 1024,
  /** Requests one incoming node-to-node connection may have being handled; at this many the node stops reading it. */
  peerInFlightPerConnection: 1024,
  /** Requests one node keeps unanswered on its connection to a peer; later ones wait in order. */
  peerClientInFlightMax: 1024,
  /** A connection to a peer that is not established within this long fails (the peer is down or cut off). */
  peerConnectTimeoutMs: 1_000,
  /** Failover's check of a silent voter's internal port waits this long for an answer (only a refusal counts). */
  peerProbeTimeoutMs: 200,
  /** Default time a node-to-node request may take, from the call to its reply (connecting included). */
  peerRequestTimeoutMsDefault: 5_000,
  /** After a failed connection to a peer, requests within this long fail at once instead of trying again (doubling to the max). */
  peerRetryDelayMsMin: 50,
  peerRetryDelayMsMax: 1_000,
  /** A connection to the internal port that has not said which channel it is for within this long is closed. */
  peerHelloTimeoutMs: 5_000,

  // GETs of a segment another node holds (src/node/reader.ts): that node lends a run of entries.
  /** Most entries one `take` lends (a run is as long as the GETs waiting for the segment on the asking node). */
  lendEntriesMax: 64,
  /** Most payload bytes one `take` lends (at least one entry, whatever its size). */
  lendBytesMax: 1024 * 1024,
  /** A lent run with entries left that no GET has used for this long is handed back (other nodes' GETs of the segment wait meanwhile). */
  lendIdleMs: 5,
  /** A lent run is handed back this long after the take at the latest (well below the holder's 10 s hold limit). */
  lendAgeMsMax: 1_000,
  /** Most PUTs forwarded in one `append` (those made in one event-loop turn for one segment; src/node/forwarding.ts). */
  forwardRunEntriesMax: 64,
  /** Most payload bytes forwarded in one `append` (at least one PUT, whatever its size). */
  forwardRunBytesMax: 1024 * 1024,
} as const;

function assertLimit(condition: boolean, what: string): void {
  if (!condition) throw new Error(`limits.ts is inconsistent: ${what}`);
}

assertLimit(limits.startTimeoutMsMin <= limits.startTimeoutMsDefault, 'startTimeoutMsDefault below its minimum');
assertLimit(limits.startTimeoutMsDefault <= limits.startTimeoutMsMax, 'startTimeoutMsDefault above its maximum');
assertLimit(limits.stopTimeoutMsMin <= limits.stopTimeoutMsDefault, 'stopTimeoutMsDefault below its minimum');
assertLimit(limits.stopTimeoutMsDefault <= limits.stopTimeoutMsMax, 'stopTimeoutMsDefault above its maximum');
assertLimit(limits.pluginsMax <= limits.configArrayItemsMax, 'the plugins list cannot hold pluginsMax names');
assertLimit(limits.stagingCopyBytesMax + 32 <= limits.stagingBytes, 'a copied payload must fit the staging buffer');
assertLimit(limits.readBatchEntriesMax <= limits.batchEntriesMax * 10, 'read batches are bounded like write batches');
assertLimit(limits.batchBytesMax <= limits.fileBytesMaxDefault, 'a batch must fit one data file');
assertLimit(limits.serverReadReplyReserveBytes >= limits.frameBytesMax, 'a GET or FETCH reply of one entry must fit its reservation');
// `OK <n>` and up to batchEntriesMax sizes of at most 5 digits each, after the payloads.
assertLimit(
  limits.serverBatchReadReplyReserveBytes >= Math.max(limits.batchReadBytesMax, limits.frameBytesMax) + 16 + limits.batchEntriesMax * 6,
  'a batch read reply must fit its reservation',
);
assertLimit(
  limits.batchReadBytesMax + limits.peerHeadBytesMax <= limits.peerFrameBytesMax,
  "an MFETCH's run read from another node must fit a node-to-node frame",
);
assertLimit(limits.serverBufferedBytesPerConnection <= limits.serverReplyBytesTotal, 'one connection must fit the node-wide reply budget');
assertLimit(
  limits.serverFrameBytesPerTurn >= 1 && limits.serverFramesPerTurn >= 1,
  'a connection must be able to start one request per turn',
);
assertLimit(limits.serverFrameBytesPerTurnTotal >= limits.frameBytesMax, 'the node must be able to start the largest request in one turn');
assertLimit(limits.entryBytesMax <= 2 ** 32 - 1, 'payload lengths are stored as u32');
assertLimit(
  limits.peerFrameBytesMax >= limits.frameBytesMax + limits.peerHeadBytesMax,
  'a forwarded request must fit a node-to-node frame',
);
assertLimit(limits.peerRetryDelayMsMin <= limits.peerRetryDelayMsMax, 'peer retry delays out of order');
assertLimit(limits.lendBytesMax + limits.peerHeadBytesMax <= limits.peerFrameBytesMax, 'a lent run must fit a node-to-node frame');
assertLimit(
  limits.forwardRunBytesMax + limits.peerHeadBytesMax <= limits.peerFrameBytesMax,
  'a forwarded run must fit a node-to-node frame',
);
