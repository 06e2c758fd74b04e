// panel.js — one selection as timeline, top table and flame graph side by
// side (the single view, the span view), or its sandwich of one function.
import * as api from './api.js';
import * as fmt from './format.js';
import { FlameGraph } from './flamegraph.js';
import { NodeSearch, Table, barCell } from './table.js';
import { Timeline } from './timeline.js';
import { fromFlamebearer, functionTotals, matchedTotal, sandwich } from './tree.js';
import { parseQuery } from './state/url.js';

// Functions loaded into the table (the answer says how many there are); when
// they are a cut of the selection's, the table's search asks the node for
// the matching ones (/api/top?search=, table.js NodeSearch).
const TOP_LIMIT = 5000;
const NAME_CHARS = 30; // longer names are shortened package first (the row's title has it whole)
// Two bars around a line: callers above, callees below (no icon font needed).
const SANDWICH_ICON = '<svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">' +
  '<rect x="1" y="1" width="10" height="3" rx="1" fill="currentColor"/>' +
  '<rect x="1" y="5.5" width="10" height="1" fill="currentColor"/>' +
  '<rect x="1" y="8" width="10" height="3" rx="1" fill="currentColor"/></svg>';

export class Panel {
  // app: {setState(patch, push), tooltip, showError, showPartial}
  constructor(root, app, name) {
    this.app = app;
    this.name = name;
    root.innerHTML = `
      <div class="timeline-box"></div>
      <div class="toolbar">
        <input type="search" class="search" placeholder="search functions (/)" aria-label="search functions" maxlength="1024">
        <span class="matched"></span>
        <button class="back" title="zoom out one step (Backspace)">◀ back</button>
        <button class="reset" title="reset zoom (Esc)">reset zoom</button>
        <button class="unsandwich" hidden>✕ close sandwich</button>
        <span class="zoomed"></span>
        <span class="spacer"></span>
        <span class="exports">export:
          <a data-format="pprof" download>pprof</a>
          <a data-format="folded" download>folded</a>
          <a data-format="svg" download>SVG</a>
          <a data-format="speedscope" download>speedscope</a></span>
      </div>
      <div class="split">
        <div class="table-box"></div>
        <div class="graph-box">
          <div class="graph"></div>
          <div class="sandwich" hidden>
            <div class="caption callers-caption"></div><div class="graph callers"></div>
            <div class="caption callees-caption"></div><div class="graph callees"></div>
          </div>
          <div class="footnote"></div>
        </div>
      </div>`;
    const q = (s) => root.querySelector(s);
    this.q = q;
    this.timeline = new Timeline(q('.timeline-box'), {
      onSelect: (f, u) => app.setState({ from: String(f), until: String(u) }),
    });
    const tip = app.tooltip;
    this.graph = new FlameGraph(q('.graph'), { tooltip: tip, onZoom: () => this.zoomed() });
    this.callers = new FlameGraph(q('.callers'), { tooltip: tip, inverted: true });
    this.callees = new FlameGraph(q('.callees'), { tooltip: tip });
    this.table = new Table(q('.table-box'), {
      className: 'top', sortKey: 'self', columns: [],
      onRow: (r) => app.setState({ fn: this.state.fn === r.name ? '' : r.name }, false),
    });
    this.finder = new NodeSearch(this.table, async (text, signal) => {
      const p = { query: this.query, from: this.state.from, until: this.state.until, limit: TOP_LIMIT, search: text };
      const ans = await api.top(p, signal);
      return { rows: ans.functions, matched: ans.matchCount, of: ans.functionCount };
    });
    this.search = q('.search');
    this.search.addEventListener('input', () => app.setState({ search: this.search.value }, false));
    q('.reset').onclick = () => this.graph.reset();
    q('.back').onclick = () => this.graph.back();
    q('.unsandwich').onclick = () => app.setState(this.sandwichPatch(''));
  }

  // The single view's sandwich is its own view (view=sandwich); the span and
  // profile panels open theirs in place (sandwich=1), over their own tree.
  sandwichPatch(fn) {
    if (this.name === 'single') return fn ? { view: 'sandwich', fn } : { view: 'single' };
    return fn ? { sandwich: '1', fn } : { sandwich: '' };
  }

  sandwichOf(state) {
    if (this.name === 'single') return state.view === 'sandwich' ? state.fn : '';
    return state.sandwich ? state.fn : '';
  }

  // For CPU types the values read in cores (the average number busy over
  // the range), else in the profile's unit; both with their share.
  columns(cpu) {
    const unit = this.unit;
    const pct = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)) + '%';
    const val = (v, c) => (cpu && c != null ? fmt.coresNumber(c) : fmt.value(v, unit));
    return [
      { key: 'name', title: 'Function', render: (r) => this.nameCell(r) },
      { key: 'self', title: cpu ? 'Self (cores)' : 'Self', num: true,
        render: (r) => barCell(`${val(r.self, r.selfCores)} · ${pct(r.selfPercent)}`, r.self / (this.maxSelf || 1)) },
      { key: 'total', title: cpu ? 'Total (cores)' : 'Total', num: true,
        render: (r) => barCell(`${val(r.total, r.totalCores)} · ${pct(r.totalPercent)}`, r.totalPercent / 100) },
    ];
  }

  nameCell(r) {
    const span = document.createElement('span');
    span.className = 'fn';
    const sw = document.createElement('button');
    sw.className = 'icon';
    sw.innerHTML = SANDWICH_ICON;
    sw.title = 'sandwich view: callers and callees of ' + r.name;
    sw.onclick = (e) => {
      e.stopPropagation();
      this.app.setState(this.sandwichPatch(r.name));
    };
    const dot = document.createElement('i');
    dot.className = 'swatch';
    dot.style.background = fmt.packageColor(r.name);
    span.append(sw, dot, r.name === 'other' ? 'other (folded frames)' : fmt.fit(r.name, NAME_CHARS));
    return span;
  }

  // Loads when the selection changed, then applies search, highlight, sandwich.
  async show(state, query) {
    this.state = state;
    const key = [query, state.from, state.until, state.maxNodes, this.profileId(state)].join('|');
    if (key !== this.key) {
      this.key = key;
      try {
        await this.load(state, query);
      } catch (e) {
        this.key = null; // a failed load is tried again next time
        throw e;
      }
    }
    await this.apply(state);
  }

  async load(state, query) {
    const { type } = parseQuery(query);
    this.unit = fmt.unitOf(type);
    this.cpu = fmt.isCPU(type);
    // One traced request reads as its CPU time: cores averaged over the
    // range would be a vanishing fraction of one core.
    const rate = this.cpu && this.name !== 'spans';
    this.query = query;
    const p = { query, from: state.from, until: state.until };
    this.abort?.abort();
    this.abort = new AbortController();
    this.finder.reset();
    const sig = this.abort.signal;
    this.tree = null;
    const id = this.profileId(state);
    const [r, t] = id ? await this.loadProfile(id, state, sig) : await Promise.all([
      api.render({ ...p, maxNodes: state.maxNodes }, sig),
      api.top({ ...p, limit: TOP_LIMIT }, sig),
    ]);
    this.render = r;
    this.top = t;
    this.app.showPartial(api.partialText(r) || api.partialText(t));
    this.tree = fromFlamebearer(r.flamebearer);
    const secs = t.rangeSeconds || 0;
    this.coresPer = rate && secs ? (v) => v / 1e9 / secs : null;
    const maxNodes = state.maxNodes || 8192;
    this.graph.setTree(this.tree, { unit: this.unit, coresPer: this.coresPer, maxNodes });
    const gauge = !!(r.metadata && r.metadata.aggregationType === 'average');
    this.timeline.set([{ timeline: r.timeline }], this.unit, this.cpu, gauge);
    this.q('.timeline-box').hidden = !!id; /* one stored profile has no timeline */
    this.maxSelf = Math.max(0, ...t.functions.map((f) => f.self));
    this.table.opts.columns = this.columns(rate);
    let note = t.functionCount > t.functions.length
      ? `the top ${t.functions.length} of ${t.functionCount} functions` : fmt.count(t.functionCount, 'function');
    if (rate && t.cores != null) note += ` · ${fmt.cores(t.cores)} on average`;
    this.table.setRows(t.functions, note);
    let foot = `total ${fmt.value(r.flamebearer.numTicks, this.unit)} over ${secs} s`;
    if (gauge) foot = `in use: ${fmt.value(r.flamebearer.numTicks, this.unit)}, the average profile over ${secs} s`;
    if (this.name === 'spans') foot = `${this.cpu ? 'CPU time' : 'total'} of the samples with this id: ${fmt.value(r.flamebearer.numTicks, this.unit)}`;
    if (this.hasOther()) foot += ` · "other" frames (hatched) fold what maxNodes=${maxNodes} cut; their totals are exact`;
    if (!r.flamebearer.numTicks) foot = 'no samples match this selection in this range: widen the range or change the selector';
    // where the node spent the time (Server-Timing), its steps on hover
    const timing = api.timingText(r);
    if (timing) foot += ` · answered in ${timing.total}`;
    const footnote = this.q('.footnote');
    footnote.textContent = foot;
    footnote.title = timing ? `the flame graph's answer took ${timing.total} on the node: ${timing.steps}` : '';
    this.exports(p, state.maxNodes, id);
  }

  // The profiles view's panel shows one stored profile, not a selection.
  profileId(state) {
    return this.name === 'profile' ? state.profile : '';
  }

  // One stored profile: its flame graph, and its table computed from the
  // untruncated tree of the same answer (maxNodes 0 would be unbounded, so
  // the table is of the frames the graph keeps; "other" is left out).
  async loadProfile(id, state, sig) {
    const r = await api.profile(id, { maxNodes: state.maxNodes }, sig);
    const whole = r.flamebearer.numTicks || 1;
    const secs = 10; // a stored profile covers one 10 s window
    const cpu = fmt.isCPU(parseQuery(state.query).type);
    const fns = functionTotals(fromFlamebearer(r.flamebearer)).filter((f) => f.name !== 'other');
    for (const f of fns) {
      f.selfPercent = (100 * f.self) / whole;
      f.totalPercent = (100 * f.total) / whole;
      if (cpu) [f.selfCores, f.totalCores] = [f.self / 1e9 / secs, f.total / 1e9 / secs];
    }
    // every function: the table's search then filters the whole list here
    const t = { functions: fns, functionCount: fns.length, rangeSeconds: secs,
      cores: cpu ? whole / 1e9 / secs : null };
    return [r, t];
  }

  hasOther() {
    return this.render.flamebearer.names.includes('other');
  }

  exports(p, maxNodes, profileId) {
    for (const a of this.q('.exports').querySelectorAll('a')) {
      const f = a.dataset.format;
      const mn = f === 'svg' ? maxNodes : '';
      a.href = profileId ? api.profileURL(profileId, { format: f, maxNodes: mn })
        : api.url('/pyroscope/render', { ...p, format: f, maxNodes: mn });
      a.download = `flamedb.${{ pprof: 'pb.gz', folded: 'txt', svg: 'svg', speedscope: 'speedscope.json' }[f]}`;
    }
  }

  // Search, highlight and sandwich: no reload. Resolves once the table shows
  // the search's rows (asked of the node when the loaded ones are a cut).
  async apply(state) {
    if (!this.tree) return;
    if (this.search.value !== state.search) this.search.value = state.search;
    const match = state.fn ? (n) => n === state.fn : fmt.nameMatcher(state.search);
    this.graph.setHighlight(match);
    this.table.setSelected(state.fn);
    const finding = this.findRows(state.search);
    const m = this.q('.matched');
    this.matched = null;
    if (match) {
      this.matched = matchedTotal(this.tree, match);
      const share = fmt.percent(this.matched.total, this.tree.total);
      const what = state.fn ? `"${state.fn}"` : `"${state.search}"`;
      // the graph's frames only: the table counts what maxNodes folded too
      const cut = this.hasOther() ? '; "other" may hold more' : '';
      m.textContent = `${what}: ${this.matched.frames} frame${this.matched.frames === 1 ? '' : 's'}, matched ${share} of total (${fmt.value(this.matched.total, this.unit)})${cut}`;
    } else {
      m.textContent = '';
    }
    this.showSandwich(this.sandwichOf(state));
    await finding;
  }

  // The table's rows for a search: filtered in the page when the loaded rows
  // are every function, else asked of the node (NodeSearch).
  findRows(text) {
    const t = this.top;
    return this.finder.find(text, t ? t.functionCount : 0, t ? t.functions.length : 0);
  }

  showSandwich(fn) {
    const on = !!fn;
    this.q('.sandwich').hidden = !on;
    this.q('.graph').hidden = on;
    this.q('.unsandwich').hidden = !on;
    this.q('.back').hidden = this.q('.reset').hidden = on;
    if (!on) {
      this.sw = null;
      this.graph.draw();
      return;
    }
    const s = (this.sw = sandwich(this.tree, fn));
    const info = { unit: this.unit, coresPer: this.coresPer };
    this.callers.setTree(s.callers, info);
    this.callees.setTree(s.callees, info);
    const share = fmt.percent(s.callees.total, this.tree.total);
    this.q('.callers-caption').textContent = `callers of ${fn} (${share} of total, ${s.calls} call sites merged)`;
    this.q('.callees-caption').textContent = `callees of ${fn}`;
    // the function is the callers' bottom row: bring it into view
    const box = this.q('.graph-box');
    box.scrollTop = Math.max(0, this.q('.callers').offsetHeight - box.clientHeight / 2);
  }

  zoomed() {
    const f = this.graph.focus;
    const z = this.q('.zoomed');
    z.textContent = f && f !== this.graph.root
      ? `zoomed: ${f.name} (${fmt.percent(f.total, this.tree.total)} of total)` : '';
  }

  // For tests: what is on screen.
  snapshot() {
    return {
      query: this.query,
      numTicks: this.render ? this.render.flamebearer.numTicks : null,
      frames: this.graph.drawn(),
      narrow: this.graph.narrowDrawn(),
      nodes: this.graph.size(),
      drawMs: this.graph.drawMs,
      focus: this.graph.focus ? this.graph.focus.name : null,
      matched: this.matched,
      sandwich: this.sw ? { callers: this.callers.drawn(), callees: this.callees.drawn() } : null,
      table_foot: this.q('.table-box .table-foot')?.textContent,
      table_head: [...this.q('.table-box thead')?.rows[0]?.cells || []].map((c) => c.textContent),
      table: [...(this.q('.table-box tbody')?.rows || [])].map((tr) => ({
        name: tr.dataset.name, cells: [...tr.cells].map((c) => c.textContent), selected: tr.className === 'selected',
      })),
    };
  }
}
