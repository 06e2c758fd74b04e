// profiles.js — the single profiles of the selection (/api/profiles), newest
// first; clicking an id opens that one stored profile below the list
// (GET /api/profiles/ID?format=json) with the flame graph, table, search and
// exports of the main view.
import * as api from './api.js';
import * as fmt from './format.js';
import { Panel } from './panel.js';
import { Table } from './table.js';
import { parseQuery } from './state/url.js';

const LIMIT = 500;

export class ProfilesView {
  constructor(root, app) {
    this.app = app;
    root.innerHTML = `<div class="toolbar"><span class="profiles-note"></span></div><div class="table-box"></div>
      <div class="profile-open" hidden><h3 class="profile-title"></h3><div class="profile-panel"></div></div>`;
    this.q = (s) => root.querySelector(s);
    this.panel = new Panel(this.q('.profile-panel'), app, 'profile');
    this.table = new Table(this.q('.table-box'), {
      className: 'profiles', sortKey: 'time', key: (r) => r.id + ' ' + labelText(r.labels), columns: [
        { key: 'time', title: 'Time', num: true, render: (r) => fmt.time(r.time) },
        { key: 'id', title: 'Profile', render: (r) => this.link(r) },
        { key: 'total', title: 'Total', num: true, render: (r) => fmt.value(r.total, this.unit) },
        { key: 'labels', title: 'Labels', sort: (r) => labelText(r.labels), render: (r) => labelText(r.labels) },
      ],
    });
  }

  get graph() {
    return this.app.state.profile ? this.panel.graph : null;
  }

  async show(state) {
    this.unit = fmt.unitOf(parseQuery(state.query).type);
    const key = [state.query, state.from, state.until].join('|');
    if (key !== this.key) {
      const ans = await api.profiles({ query: state.query, from: state.from, until: state.until, limit: LIMIT });
      this.key = key;
      this.app.showPartial(api.partialText(ans));
      this.rows = ans.profiles;
      this.table.setRows(ans.profiles, ans.truncated ? `more than ${LIMIT}: narrow the range to see older ones` : '');
      this.q('.profiles-note').textContent =
        `${ans.profiles.length}${ans.truncated ? '+ profiles' : ans.profiles.length === 1 ? ' profile' : ' profiles'} in the range; click an id to open that profile`;
    }
    this.q('.profile-open').hidden = !state.profile;
    // the list keeps room for an opened profile below it, else takes the page
    this.q('.table-box').classList.toggle('short', !!state.profile);
    if (!state.profile) return;
    const row = (this.rows || []).find((r) => r.id === state.profile);
    this.q('.profile-title').textContent = row
      ? `profile ${row.profile_id || row.id} · ${fmt.time(row.time)} · ${labelText(row.labels)}`
      : `profile ${state.profile}`;
    await this.panel.show(state, state.query);
    if (this.scrollTo !== state.profile) {
      this.scrollTo = state.profile;
      this.q('.profile-open').scrollIntoView({ block: 'start' });
    }
  }

  // The id opens the profile here; the link itself is its JSON (a new tab).
  link(r) {
    const a = document.createElement('a');
    a.href = api.profileURL(r.id);
    a.textContent = r.profile_id || r.id; /* the pushed profile's id; the link's is longer */
    a.title = 'open this profile (the link itself is its JSON)';
    a.dataset.id = r.id;
    a.className = 'mono';
    a.onclick = (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      this.app.setState({ profile: r.id, search: '', fn: '', sandwich: '' });
    };
    return a;
  }

  snapshot() {
    return { profiles: this.rows || [], opened: this.app.state.profile ? this.panel.snapshot() : null };
  }
}

function labelText(labels) {
  return Object.entries(labels || {}).filter(([k]) => !k.startsWith('__'))
    .map(([k, v]) => `${k}=${v}`).join(', ');
}
