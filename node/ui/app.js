// app.js — wires the page: reads the state from the URL, shows the view it
// names, and writes every change back to the URL (docs/ui.md).
import * as api from './api.js';
import * as url from './state/url.js';
import { QueryBar } from './querybar.js';
import { Panel } from './panel.js';
import { DiffView } from './diff.js';
import { TagsView } from './tags.js';
import { ProfilesView } from './profiles.js';
import { ClusterView } from './cluster.js';

const $ = (id) => document.getElementById(id);
// span ids shown as buttons in the span view (all are counted)
const SPAN_IDS_SHOWN = 200;
const TAB_OF = {
  single: 'single', sandwich: 'single', diff: 'diff', tags: 'tags', spans: 'spans', profiles: 'profiles',
  cluster: 'cluster',
};
const KEY_VIEWS = ['single', 'diff', 'tags', 'spans', 'profiles'];
const VIEWS = [...KEY_VIEWS, 'cluster'];

class App {
  constructor() {
    this.tooltip = $('tooltip');
    this.state = url.read();
    this.seq = 0;
    this.partials = {};
    this.bar = new QueryBar((s) => this.setState({ ...s, fn: '', search: '' }));
    this.views = {
      single: new Panel($('view-single'), this, 'single'),
      diff: new DiffView($('view-diff'), this),
      tags: new TagsView($('view-tags'), this),
      spans: new Panel($('span-panel'), this, 'spans'),
      profiles: new ProfilesView($('view-profiles'), this),
      cluster: new ClusterView($('view-cluster'), this),
    };
    for (const a of document.querySelectorAll('#tabs a')) {
      a.onclick = (e) => { e.preventDefault(); this.setState({ view: a.dataset.view, sandwich: '' }); };
    }
    $('span-go').onclick = () => this.setState({ span: $('span-id').value.trim(), spanLabel: $('span-label').value, sandwich: '' });
    $('span-id').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('span-go').click(); });
    $('theme').onclick = () => this.toggleTheme();
    $('signin').onsubmit = (e) => { e.preventDefault(); this.signIn($('signin-token').value.trim()); };
    $('signout').onclick = () => this.signIn('');
    $('signout').hidden = !api.token();
    // exports are links; with a token they download through fetch (api.download)
    document.addEventListener('click', (e) => {
      const a = e.target.closest && e.target.closest('a[download]');
      if (!a || !api.token() || e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      api.download(a.href, a.getAttribute('download') || 'flamedb').catch((err) => this.showError(err));
    });
    $('help-btn').onclick = () => { $('help').hidden = !$('help').hidden; };
    window.addEventListener('popstate', () => { this.state = url.read(); this.route(); });
    document.addEventListener('keydown', (e) => this.key(e));
    this.applyTheme(localStorage.getItem('flamedb-theme') ||
      (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
  }

  async start() {
    try {
      const q = await this.bar.load(this.state);
      if (q) {
        this.state.query = q;
        url.write(this.state, false);
        await this.bar.load(this.state);
      }
    } catch (e) {
      this.showError(e);
      $('view-' + (TAB_OF[this.state.view] || 'single')).classList.add('failed');
      if (e.status === 401) return this.askToken(e);
    }
    await this.route();
  }

  // A node with --auth-file answered 401: ask for a token (docs/ui.md).
  askToken(e) {
    $('signin').hidden = false;
    $('signin-why').textContent = api.token()
      ? `the node refused this token: ${e.message}` : 'this node needs a token (--auth-file): paste a read token';
    $('signin-token').focus();
  }

  async signIn(t) {
    api.setToken(t);
    $('signin').hidden = true;
    $('signin-token').value = '';
    $('signout').hidden = !t;
    await this.start();
  }

  // Merges patch into the state; a changed selection reloads the view.
  setState(patch, push = true) {
    this.state = { ...this.state, ...patch };
    url.write(this.state, push);
    return this.route();
  }

  async route() {
    const s = this.state;
    const tab = TAB_OF[s.view] || 'single';
    for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.view === tab);
    for (const v of VIEWS) $('view-' + v).hidden = v !== tab;
    this.bar.sync(s);
    const seq = ++this.seq;
    document.body.dataset.ready = 'false';
    this.tab = tab;
    this.showError(null);
    $('view-' + tab).classList.remove('failed');
    this.showPartial(this.partials[tab] || '', tab);
    try {
      // the cluster view needs no selection: it works before any push
      if (tab === 'cluster') await this.views.cluster.show();
      else if (!s.query) throw new Error('no profiles yet: push one (docs/api.md, POST /ingest) and reload');
      else if (tab === 'spans') await this.showSpans(s);
      else await this.views[tab].show(s, s.query);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (seq === this.seq) {
        this.showError(e);
        // what the view held is not this query's answer (an empty timeline
        // would read "no data in this range"): only its forms stay
        $('view-' + tab).classList.add('failed');
      }
      if (e.status === 401) this.askToken(e);
    }
    if (seq === this.seq) document.body.dataset.ready = 'true';
  }

  async showSpans(s) {
    $('span-id').value = s.span;
    $('span-label').value = s.spanLabel;
    $('span-panel').hidden = !s.span;
    const listed = this.listSpanIds(s);
    if (s.span) await this.views.spans.show(s, url.withMatcher(s.query, s.spanLabel, s.span));
    await listed;
  }

  // The ids of the selection's traced requests that have profiles in the
  // range (label-values of span_id / trace_id, exact from any node), as
  // buttons that show one; a refusal (too many ids) is said in their place.
  async listSpanIds(s) {
    const box = $('span-ids'), note = document.querySelector('#view-spans .span-ids-note');
    box.replaceChildren();
    note.textContent = '';
    let ids;
    try {
      ids = await api.labelValues({ label: s.spanLabel, match: s.query, from: s.from, until: s.until });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      note.textContent = `${s.spanLabel} list: ${e.message}`;
      return;
    }
    const shown = ids.slice(0, SPAN_IDS_SHOWN);
    note.textContent = ids.length === 0 ? `no ${s.spanLabel} with profiles in this selection and range`
      : `${ids.length} ${s.spanLabel}${ids.length === 1 ? '' : 's'} with profiles` +
        (ids.length > shown.length ? ` (the first ${shown.length}; narrow the range for the rest)` : '') + ':';
    box.replaceChildren(...shown.map((id) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'span-id' + (id === s.span ? ' selected' : '');
      b.textContent = id;
      b.onclick = () => this.setState({ span: id, spanLabel: s.spanLabel, sandwich: '' });
      return b;
    }));
  }

  showError(e) {
    const el = $('error');
    el.hidden = !e;
    el.textContent = e ? (e.path ? `${e.path} answered ${e.status} ${e.code}: ${e.message}` : String(e.message || e)) : '';
  }

  // A view's partial warning stays with it until it reloads.
  showPartial(text, tab = this.tab) {
    this.partials[tab] = text;
    if (tab !== this.tab) return;
    const el = $('partial');
    el.hidden = !text;
    el.textContent = text ? '⚠ ' + text : '';
  }

  applyTheme(t) {
    document.documentElement.dataset.theme = t;
    localStorage.setItem('flamedb-theme', t);
    for (const v of [this.views.single, this.views.spans, this.views.diff, this.views.profiles.panel]) {
      v.graph?.draw();
      v.timeline?.draw();
    }
  }

  toggleTheme() {
    this.applyTheme(document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark');
  }

  current() {
    const tab = TAB_OF[this.state.view] || 'single';
    return this.views[tab];
  }

  key(e) {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName);
    const v = this.current();
    if ((e.key === 'f' && (e.ctrlKey || e.metaKey)) || (e.key === '/' && !typing)) {
      const box = document.querySelector(`#view-${TAB_OF[this.state.view] || 'single'} .search`);
      if (box) { box.focus(); box.select(); e.preventDefault(); }
      return;
    }
    if (e.key === 'Escape') {
      $('help').hidden = true;
      if (typing) e.target.blur();
      v.graph?.reset();
      if (this.state.search || this.state.fn) this.setState({ search: '', fn: '', sandwich: '' }, false);
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === 'Backspace') { v.graph?.back(); e.preventDefault(); }
    else if (e.key === 't') this.toggleTheme();
    else if (e.key === '?') $('help').hidden = !$('help').hidden;
    else if (e.key >= '1' && e.key <= '5') this.setState({ view: KEY_VIEWS[e.key - 1] });
  }

  // The test hook: what each view shows, as data.
  snapshot() {
    const tab = TAB_OF[this.state.view] || 'single';
    const v = this.views[tab];
    return {
      state: { ...this.state }, view: tab, ready: document.body.dataset.ready === 'true',
      error: $('error').hidden ? null : $('error').textContent,
      partial: $('partial').hidden ? null : $('partial').textContent,
      theme: document.documentElement.dataset.theme,
      ...(v.snapshot ? v.snapshot() : {}),
      ...(tab === 'spans' ? { spanIds: [...document.querySelectorAll('#span-ids button')].map((b) => b.textContent),
                              spanIdsNote: document.querySelector('#view-spans .span-ids-note').textContent } : {}),
    };
  }
}

const app = new App();
// window.flamedbUI: a small hook for tests and the curious (docs/ui.md).
window.flamedbUI = {
  snapshot: () => app.snapshot(),
  setState: (patch) => app.setState(patch),
  zoom: (name) => {
    const g = app.current().graph;
    const f = g.frames.find((x) => x.n.name === name);
    if (f) g.zoom(f.n);
    return !!f;
  },
  back: () => app.current().graph.back(),
  selectRange: (from, until) => app.current().timeline.select(from, until),
};
app.start();
