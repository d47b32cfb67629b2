// The payload crash tests write for entry i: its index, then filler whose length varies with i
// (so records straddle pages and buffer boundaries). Shared by the child and the checks.

export function payloadOf(index: number): string {
  return `entry-${index}-${'x'.repeat((index * 37) % 700)}`;
}
