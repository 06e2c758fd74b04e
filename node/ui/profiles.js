// profiles.js — the single profiles of the selection (/api/profiles), newest
// first; each opens by its id (GET /api/profiles/ID?format=json).
import * as api from './api.js';
import * as fmt from './format.js';
import { Table } from './table.js';
import { parseQuery } from './state/url.js';

const LIMIT = 500;

export class ProfilesView {
  constructor(root, app) {
    this.app = app;
    root.innerHTML = `<div class="toolbar"><span class="profiles-note"></span></div><div class="table-box"></div>`;
    this.q = (s) => root.querySelector(s);
    this.table = new Table(this.q('.table-box'), {
      className: 'profiles', sortKey: 'time', key: (r) => r.id + ' ' + labelText(r.labels), columns: [
        { key: 'time', title: 'Time', num: true, render: (r) => fmt.time(r.time) },
        { key: 'id', title: 'Profile', render: (r) => link(r.id) },
        { key: 'total', title: 'Total', num: true, render: (r) => fmt.value(r.total, this.unit) },
        { key: 'labels', title: 'Labels', sort: (r) => labelText(r.labels), render: (r) => labelText(r.labels) },
      ],
    });
  }

  async show(state) {
    this.unit = fmt.unitOf(parseQuery(state.query).type);
    const ans = await api.profiles({ query: state.query, from: state.from, until: state.until, limit: LIMIT });
    this.app.showPartial(api.partialText(ans));
    this.rows = ans.profiles;
    this.table.setRows(ans.profiles, ans.truncated ? `more than ${LIMIT}: narrow the range to see older ones` : '');
    this.q('.profiles-note').textContent = `${ans.profiles.length}${ans.truncated ? '+' : ''} profiles in the range; open one by its id`;
  }

  snapshot() {
    return { profiles: this.rows || [] };
  }
}

function labelText(labels) {
  return Object.entries(labels || {}).filter(([k]) => !k.startsWith('__'))
    .map(([k, v]) => `${k}=${v}`).join(', ');
}

function link(id) {
  const a = document.createElement('a');
  a.href = api.profileURL(id);
  a.target = '_blank';
  a.textContent = id;
  a.className = 'mono';
  return a;
}
