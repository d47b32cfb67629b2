// The status page (docs/operations.md, "The status page") in a real browser: three nodes with
// admin endpoints, a topic written past two rollovers, and Debian's Chromium, headless, driven
// by playwright-core, loading node 1's page. It must show the three nodes up and the topic's
// three segments, then a killed node as down within 3 s. Screenshots of both states are kept
// in $TMPDIR/walrus-test-artifacts/ (CI keeps them as artifacts).

import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { chromium } from 'playwright-core';
import { withCluster } from '../helpers/cluster.js';

/** Where Chromium is: WALRUS_TEST_CHROMIUM, else Debian's package (`apt-get install chromium`). */
const CHROMIUM = [process.env.WALRUS_TEST_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (path) => path !== undefined && path !== '' && existsSync(path),
);
const ARTIFACTS = join(tmpdir(), 'walrus-test-artifacts');
const SHOT_UP = join(ARTIFACTS, 'status-page-three-nodes-up.png');
const SHOT_DOWN = join(ARTIFACTS, 'status-page-one-node-down.png');

const title =
  "status page in headless Chromium: three nodes up and the topic's three segments (screenshot status-page-three-nodes-up.png), " +
  'then a killed node down within 3 s (status-page-one-node-down.png), both in $TMPDIR/walrus-test-artifacts';

if (CHROMIUM === undefined) {
  test.skip(`${title} — skipped: no Chromium (install Debian's chromium or set WALRUS_TEST_CHROMIUM)`, () => undefined);
} else {
  const executablePath = CHROMIUM;
  test.serial(title, async (t) => {
    t.timeout(120_000);
    mkdirSync(ARTIFACTS, { recursive: true });
    await withCluster({ admin: true }, async (cluster) => {
      const leader = await cluster.leader();
      const client = cluster.client(1);
      await client.register('page');
      for (let index = 0; index < 25; index++) await client.put('page', `entry-${index}`);
      // Segments of 10, sealed by a monitor that looks every 200 ms: wait for the third to open.
      const deadline = Date.now() + 15_000;
      while ((await client.state('page')).current_segment < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

      const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
      try {
        const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
        await page.goto(`http://127.0.0.1:${cluster.adminPorts.get(1)}/`);
        await page.waitForSelector('body[data-loaded="true"]', { timeout: 10_000 });
        // Three nodes, every one up.
        await page.waitForFunction('document.querySelectorAll(\'#nodes tr[data-state="up"]\').length === 3', undefined, {
          timeout: 10_000,
        });
        t.deepEqual(await page.$$eval('#nodes tr[data-node-id]', (rows) => rows.map((row) => row.getAttribute('data-node-id'))), [
          '1',
          '2',
          '3',
        ]);
        // The topic and its three segments, the newest first; the sealed ones hold 10 each.
        await page.waitForFunction('document.querySelectorAll(\'[data-topic="page"] tr[data-segment]\').length === 3', undefined, {
          timeout: 10_000,
        });
        const segments = await page.$$eval('[data-topic="page"] tr[data-segment]', (rows) =>
          rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)),
        );
        t.deepEqual(
          segments.map((cells) => [cells[0], cells[1], cells[4]]),
          [
            ['3', 'open', segments[0]?.[4] ?? ''],
            ['2', 'sealed', '10'],
            ['1', 'sealed', '10'],
          ],
        );
        t.regex((await page.textContent('[data-topic="page"] h3')) ?? '', /^page — 3 segment\(s\), 25\+? entries/);
        t.regex((await page.textContent('#summary')) ?? '', /3 of 3 nodes up/);
        await page.screenshot({ path: SHOT_UP, fullPage: true });

        // Kill a node that neither serves the page nor leads the Raft group.
        const victim = [2, 3].find((id) => id !== leader) as number;
        const killedAt = Date.now();
        await cluster.kill(victim);
        await page.waitForSelector(`#nodes tr[data-node-id="${victim}"][data-state="down"]`, { timeout: 3_000 });
        const shownAfter = Date.now() - killedAt;
        t.true(shownAfter <= 3_000, `node ${victim} shown down after ${shownAfter} ms`);
        t.regex((await page.textContent('#summary')) ?? '', /2 of 3 nodes up/);
        await page.screenshot({ path: SHOT_DOWN, fullPage: true });
        t.log(`node ${victim} shown down ${shownAfter} ms after its kill; screenshots: ${SHOT_UP}, ${SHOT_DOWN}`);
      } finally {
        await browser.close();
      }
    });
  });
}
