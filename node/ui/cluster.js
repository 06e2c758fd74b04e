// cluster.js — the cluster as the node that serves the page sees it
// (GET /cluster/status): one row per member with its state, tokens, last
// heartbeat, addresses and the nodes it holds hints for, as `flamectl
// cluster status` prints them. Asked through api.js, so a node with
// --auth-file gets the tab's token (an admin one: the path is under
// /cluster/); the raw JSON stays one link away.
import * as api from './api.js';
import { Table } from './table.js';

export class ClusterView {
  constructor(root, app) {
    this.app = app;
    root.innerHTML = `
      <div class="toolbar"><span class="cluster-summary"></span><span class="spacer"></span>
        <button class="refresh" title="ask the node again">refresh</button>
        <a class="raw" href="/cluster/status" target="_blank">JSON</a></div>
      <div class="table-box"></div>
      <div class="footnote cluster-note"></div>`;
    this.q = (s) => root.querySelector(s);
    this.q('.refresh').onclick = () => this.app.route();
    this.table = new Table(this.q('.table-box'), {
      className: 'cluster', sortKey: 'id', sortDesc: false, key: (r) => r.id, columns: [
        { key: 'id', title: 'ID', render: (r) => (r.self ? r.id + ' (this node)' : r.id) },
        { key: 'state', title: 'State', render: (r) => stateCell(r.state) },
        { key: 'tokens', title: 'Tokens', num: true },
        { key: 'last_heartbeat_ms_ago', title: 'Last seen', num: true,
          render: (r) => (r.self ? 'self' : seen(r.last_heartbeat_ms_ago)) },
        { key: 'http', title: 'HTTP', render: (r) => link(r.http) },
        { key: 'cluster', title: 'Cluster', render: (r) => r.cluster || '-' },
        { key: 'hints', title: 'Hints for', sort: (r) => r.hints_for.join(','),
          render: (r) => r.hints_for.join(', ') || '-' },
      ],
    });
  }

  async show() {
    const st = await api.getJSON('/cluster/status');
    this.status = st;
    const nodes = (st.nodes || []).map((n) => ({ ...n, hints_for: n.hints_for || [] }));
    this.q('.cluster-summary').textContent = `cluster '${st.cluster}': ${nodes.length} node(s), ` +
      `rf ${st.rf}, write quorum ${st.quorum} (as seen by ${st.self})`;
    const notes = [`ring fingerprint ${st.ring_fingerprint}: equal on every node means equal placement`];
    if (st.full_repair) notes.push(`${st.self} is in a full repair: it is not read from until it converged`);
    if (st.regaining) notes.push(`${st.self} streams in ${st.regaining} token interval(s) it gained`);
    this.q('.cluster-note').textContent = notes.join(' · ');
    this.table.setRows(nodes);
  }

  snapshot() {
    const st = this.status || {};
    return {
      cluster: { name: st.cluster, self: st.self, rf: st.rf, quorum: st.quorum },
      members: (st.nodes || []).map((n) => ({ id: n.id, state: n.state, self: !!n.self })),
      table: [...(this.q('.table-box tbody')?.children || [])].map((tr) =>
        ({ name: tr.dataset.name, cells: [...tr.children].map((td) => td.textContent) })),
      summary: this.q('.cluster-summary').textContent,
    };
  }
}

// down and left read as trouble, joining and leaving as passing states
function stateCell(state) {
  const span = document.createElement('span');
  span.className = 'member-' + state;
  span.textContent = state;
  return span;
}

function seen(ms) {
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

function link(href) {
  if (!/^https?:\/\//.test(href || '')) return href || '-';
  const a = document.createElement('a');
  a.href = href + '/';
  a.textContent = href;
  return a;
}
