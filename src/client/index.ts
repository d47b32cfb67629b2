// The Walrus client: a pipelined client for the node's TCP protocol.

export { Consumer, type ConsumerOptions, type ConsumerPosition, Producer, type ProducerOptions } from './batching.js';
export {
  ClientError,
  type ClientErrorCode,
  type FetchedEntry,
  type TopicStateJson,
  WalrusClient,
  type WalrusClientOptions,
} from './walrus-client.js';
