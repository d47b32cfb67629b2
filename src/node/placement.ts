// Topic placement: which node leads a new topic's first segment. The live nodes, in ascending id
// order, are indexed by a hash of the topic's name, so every node places a name the same way and
// names spread evenly. The hash is the original's (Rust's DefaultHasher over a str: SipHash-1-3
// with keys 0 and 0 over the UTF-8 bytes and one 0xFF byte), so with every node up a topic lands
// where the original put it (reference/cluster.md §4.2). Unlike the original, a node that is down
// is not a candidate: it is missing from the live set.

const MASK = (1n << 64n) - 1n;
const encoder = new TextEncoder();

/** Where `topic`'s first segment goes: one of `live`, or `self` when `live` is empty. */
export function placeTopic(topic: string, live: readonly number[], self: number): number {
  const sorted = [...new Set(live)].sort((a, b) => a - b);
  if (sorted.length === 0) return self;
  return sorted[Number(topicHash(topic) % BigInt(sorted.length))] as number;
}

/**
 * A segment's replica set: its leader, then the next live voters after it in ascending id order,
 * wrapping round (leader 2 of voters 1, 2, 3: 2, 3, 1), `factor` nodes at most; fewer when fewer
 * voters are live. Every node computes the same set from the same view.
 */
export function replicaSet(leader: number, factor: number, voters: readonly number[], live: readonly number[]): number[] {
  const up = new Set(live);
  const others = [...new Set(voters)].filter((id) => id !== leader && up.has(id)).sort((a, b) => a - b);
  const inTurn = [...others.filter((id) => id > leader), ...others.filter((id) => id < leader)];
  return [leader, ...inTurn.slice(0, Math.max(0, factor - 1))];
}

/** Rust's `DefaultHasher` of a `str`: SipHash-1-3, keys (0, 0), over its UTF-8 bytes and 0xFF. */
export function topicHash(topic: string): bigint {
  const text = encoder.encode(topic);
  const bytes = new Uint8Array(text.length + 1);
  bytes.set(text);
  bytes[text.length] = 0xff;
  return sipHash13(bytes);
}

/** SipHash-1-3 with both keys zero, as a u64. */
export function sipHash13(bytes: Uint8Array): bigint {
  const state: [bigint, bigint, bigint, bigint] = [0x736f6d6570736575n, 0x646f72616e646f6dn, 0x6c7967656e657261n, 0x7465646279746573n];
  const whole = bytes.length - (bytes.length % 8);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at < whole; at += 8) compress(state, view.getBigUint64(at, true), 1);
  let last = BigInt(bytes.length & 0xff) << 56n;
  for (let at = whole; at < bytes.length; at++) last |= BigInt(bytes[at] as number) << BigInt(8 * (at - whole));
  compress(state, last, 1);
  state[2] ^= 0xffn;
  for (let round = 0; round < 3; round++) sipRound(state);
  return state[0] ^ state[1] ^ state[2] ^ state[3];
}

function compress(state: [bigint, bigint, bigint, bigint], word: bigint, rounds: number): void {
  state[3] ^= word;
  for (let round = 0; round < rounds; round++) sipRound(state);
  state[0] ^= word;
}

function sipRound(v: [bigint, bigint, bigint, bigint]): void {
  v[0] = (v[0] + v[1]) & MASK;
  v[1] = rotl(v[1], 13n) ^ v[0];
  v[0] = rotl(v[0], 32n);
  v[2] = (v[2] + v[3]) & MASK;
  v[3] = rotl(v[3], 16n) ^ v[2];
  v[0] = (v[0] + v[3]) & MASK;
  v[3] = rotl(v[3], 21n) ^ v[0];
  v[2] = (v[2] + v[1]) & MASK;
  v[1] = rotl(v[1], 17n) ^ v[2];
  v[2] = rotl(v[2], 32n);
}

function rotl(value: bigint, by: bigint): bigint {
  return ((value << by) | (value >> (64n - by))) & MASK;
}
