// The config file of a one-node test: data under the test's directory, free ports picked by the
// node (clientPort and raftPort 0), fsync each, segments of 10 and a rollover check every 200 ms
// (the original's test settings), then any `extra` lines.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export async function writeNodeConfig(dir: string, extra: readonly string[] = []): Promise<string> {
  const config = join(dir, 'node.yaml');
  await writeFile(
    config,
    [
      'node:',
      `  dataDir: ${join(dir, 'data')}`,
      '  clientPort: 0',
      '  raftPort: 0',
      'storage:',
      '  fsync: each',
      'segments:',
      '  maxEntries: 10',
      'rollover:',
      '  monitorCheckMs: 200',
      ...extra,
      '',
    ].join('\n'),
  );
  return config;
}
