// The status page's script: every second it reads /api/cluster (nodes, topics, segments) and
// /metrics (this node's counters, for the rates) from the node that served the page, and redraws.
// Plain browser JavaScript, no build step and no dependencies.

const REFRESH_MS = 1000;
/** The counters the rates are computed from, and the last sample of each. */
const RATE_COUNTERS = {
  requests: 'walrus_requests_total',
  appended: 'walrus_appended_entries_total',
  read: 'walrus_read_entries_total',
  bytes: 'walrus_appended_bytes_total',
};
let previous;

/** Sums each named counter over its label sets in a Prometheus text exposition. */
function counterSums(text) {
  const sums = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = line.split(/[{ ]/, 1)[0];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sums[name] = (sums[name] ?? 0) + value;
  }
  return sums;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className !== undefined) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? '–' : String(cell);
    tr.append(td);
  }
  return tr;
}

function formatRate(value, scale = 1) {
  if (!Number.isFinite(value)) return '–';
  const scaled = value / scale;
  return scaled >= 100 ? Math.round(scaled).toLocaleString('en-US') : scaled.toFixed(1);
}

function drawNodes(view) {
  const body = document.querySelector('#nodes tbody');
  body.replaceChildren();
  for (const node of view.nodes) {
    const state = element('span', node.up ? 'up' : 'down', `badge ${node.up ? 'up' : 'down'}`);
    const tr = row([node.self ? `${node.id} (this node)` : node.id, state, node.role, node.clientAddress, node.raftAddress]);
    tr.dataset.nodeId = String(node.id);
    tr.dataset.state = node.up ? 'up' : 'down';
    body.append(tr);
  }
}

function drawTopics(view) {
  const holder = document.getElementById('topics');
  holder.replaceChildren();
  document.getElementById('no-topics').hidden = view.topics.length > 0;
  for (const topic of view.topics) {
    const section = element('div', undefined, 'topic');
    section.dataset.topic = topic.name;
    const entries = `${topic.entries.toLocaleString('en-US')}${topic.entriesExact ? '' : '+'} entries`;
    const shown = topic.segmentsListed < topic.currentSegment ? `, newest ${topic.segmentsListed} shown` : '';
    section.append(element('h3', `${topic.name} — ${topic.currentSegment} segment(s), ${entries}${shown}`));
    const table = element('table');
    const head = element('thead');
    head.append(row(['segment', 'state', 'leader', 'replicas', 'entries', 'follower lag']));
    const body = element('tbody');
    for (const segment of topic.segments) {
      const lag = segment.followers === undefined ? null : segment.followers.map((f) => `node ${f.node}: ${f.lag}`).join(', ');
      const tr = row([
        segment.segment,
        segment.sealed ? 'sealed' : 'open',
        segment.leader,
        segment.replicas.join(', '),
        segment.entries,
        lag,
      ]);
      tr.dataset.segment = String(segment.segment);
      body.append(tr);
    }
    table.append(head, body);
    section.append(table);
    holder.append(section);
  }
}

function drawRates(sums, at) {
  if (previous !== undefined) {
    const seconds = (at - previous.at) / 1000;
    for (const [key, name] of Object.entries(RATE_COUNTERS)) {
      const delta = (sums[name] ?? 0) - (previous.sums[name] ?? 0);
      // A counter that went down means the node restarted: show nothing for this interval.
      const rate = delta < 0 || seconds <= 0 ? Number.NaN : delta / seconds;
      document.getElementById(`rate-${key}`).textContent = formatRate(rate, key === 'bytes' ? 1e6 : 1);
    }
  }
  previous = { sums, at };
}

async function refresh() {
  const banner = document.getElementById('banner');
  try {
    const [clusterReply, metricsReply] = await Promise.all([fetch('/api/cluster'), fetch('/metrics')]);
    if (!clusterReply.ok) throw new Error(`/api/cluster answered ${clusterReply.status}`);
    const view = await clusterReply.json();
    const at = Date.now();
    if (metricsReply.ok) drawRates(counterSums(await metricsReply.text()), at);
    const leader = view.consensus.leader === null ? 'no leader' : `leader ${view.consensus.leader}`;
    document.getElementById('summary').textContent =
      `node ${view.node.id} · ${view.counts.nodesUp} of ${view.counts.nodes} nodes up · ${leader} · ` +
      `${view.counts.topics} topic(s), ${view.counts.segments} segment(s) · v${view.version}`;
    document.getElementById('updated').textContent = `updated ${new Date(at).toLocaleTimeString()}`;
    banner.hidden = view.node.storageOutage === null;
    if (view.node.storageOutage !== null) banner.textContent = `Storage outage on this node: ${view.node.storageOutage}`;
    drawNodes(view);
    drawTopics(view);
    document.body.dataset.loaded = 'true';
  } catch (error) {
    banner.hidden = false;
    banner.textContent = `This node's admin endpoint does not answer (${error.message}); retrying every second.`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
