// diff.js — two selections as one flame graph colored by change (red grew,
// green shrank, by the relative change of each frame's share), with the
// regression report (/api/diff) beside it: change in percentage points and
// whether it stands out of the variation between windows. Its search finds
// functions among all of the report's (/api/diff?search=), not only the
// rows loaded, naming the report loaded (reportId) so that the node lists
// them from the report it keeps instead of computing it again.
import * as api from './api.js';
import * as fmt from './format.js';
import { FlameGraph } from './flamegraph.js';
import { NodeSearch, Table } from './table.js';
import { Timeline } from './timeline.js';
import { fromDiff, matchedTotal } from './tree.js';
import { parseQuery } from './state/url.js';
import { toSeconds } from './querybar.js';

// The comparison's query input is as wide as its text (the row's other
// controls wrap below it when it needs the room), so no part of the query
// that tells the sides apart is hidden.
const fitQuery = (input) => { input.size = Math.max(40, input.value.length + 2); };

const rangeText = (v) => (/^\d+$/.test(v) ? fmt.time(toSeconds(v)) : v);

// Functions of the regression report loaded into its table (the answer says
// how many there are); when they are a cut, the table's search asks the node
// for the matching ones (/api/diff?search=, table.js NodeSearch).
const REPORT_LIMIT = 200;

// The colour key: one chip per step, each with its own label, in the
// colours the graph draws (fmt.diffColor).
const LEGEND = [[-100, '−100% (shrank)'], [-50, '−50%'], [0, 'unchanged'], [50, '+50%'], [100, '+100% (grew, new)']];
const legendHTML = () => 'share: ' + LEGEND.map(([d, text]) =>
  `<span class="key"><i style="background:${fmt.diffColor(d)}"></i>${text}</span>`).join(' ');

export class DiffView {
  constructor(root, app) {
    this.app = app;
    root.innerHTML = `
      <div class="diff-controls">
        <div><b class="base-chip">baseline</b> <code class="left-q"></code> <span class="left-r"></span></div>
        <div class="comp-row"><b class="comp-chip">comparison</b>
          <input class="right-q" placeholder="same query as the baseline" aria-label="comparison query">
          <label class="nowrap">from <input class="right-from" size="12" placeholder="same" aria-label="comparison from"></label>
          <label class="nowrap">until <input class="right-until" size="12" placeholder="same" aria-label="comparison until"></label>
          <button class="right-apply">compare</button>
          <button class="right-prev" title="the same length of time just before the baseline">previous period</button>
          <button class="right-day" title="the baseline's range one day earlier, as the baseline">vs 24 h before</button>
        </div>
      </div>
      <div class="timeline-box"></div>
      <div class="toolbar">
        <input type="search" class="search" placeholder="search functions (/)" aria-label="search functions" maxlength="1024">
        <span class="matched"></span>
        <button class="reset" title="reset zoom (Esc)">reset zoom</button>
        <span class="legend" title="colour: the relative change of each frame's share of its side's total"></span>
        <span class="spacer"></span>
        <span class="exports">export:
          <a data-format="svg" download>SVG</a>
          <a data-format="folded" download>folded</a>
          <a data-format="speedscope" download>speedscope</a></span>
      </div>
      <div class="split diff-split">
        <div class="table-box"></div>
        <div class="graph-box"><div class="graph"></div><div class="footnote"></div></div>
      </div>`;
    const q = (s) => root.querySelector(s);
    this.q = q;
    q('.legend').innerHTML = legendHTML();
    this.timeline = new Timeline(q('.timeline-box'), {
      onSelect: (f, u) => app.setState({ from: String(f), until: String(u) }),
    });
    this.graph = new FlameGraph(q('.graph'), { tooltip: app.tooltip });
    this.table = new Table(q('.table-box'), {
      className: 'report', sortKey: 'abschange', columns: this.columns(), foundOrder: 'by change',
      onRow: (r) => app.setState({ fn: this.state.fn === r.name ? '' : r.name }, false),
    });
    this.finder = new NodeSearch(this.table, async (text, signal) => {
      const ans = await api.diffReport({ ...this.params, limit: REPORT_LIMIT, search: text, reportId: this.reportId }, signal);
      // a report computed again (a relative range moved on, the node's cache
      // evicted it) is the one the next search names
      if (ans.reportId) this.reportId = ans.reportId;
      return { rows: ans.functions, matched: ans.matchCount, of: ans.functionCount };
    });
    q('.search').addEventListener('input', (e) => app.setState({ search: e.target.value }, false));
    q('.reset').onclick = () => this.graph.reset();
    q('.right-apply').onclick = () => app.setState({
      rightQuery: q('.right-q').value.trim(), rightFrom: q('.right-from').value.trim(),
      rightUntil: q('.right-until').value.trim(),
    });
    q('.right-q').addEventListener('keydown', (e) => { if (e.key === 'Enter') q('.right-apply').click(); });
    q('.right-q').addEventListener('input', (e) => fitQuery(e.target));
    q('.right-prev').onclick = () => this.shift(null);
    q('.right-day').onclick = () => this.shift(86400);
  }

  // Comparison range: shifted back by `by` seconds, or by the range's length.
  shift(by) {
    const f = toSeconds(this.state.from), u = toSeconds(this.state.until);
    const d = by || u - f;
    this.app.setState({ rightFrom: String(f - d), rightUntil: String(u - d) });
  }

  columns() {
    const pct = (v) => v.toFixed(2) + '%';
    return [
      { key: 'sig', title: '', sort: (r) => (r.significant ? 1 : 0), render: (r) => mark(r) },
      { key: 'name', title: 'Function', render: (r) => fmt.fit(r.name, 34) },
      { key: 'leftShare', title: 'Base', num: true, render: (r) => pct(r.leftShare) },
      { key: 'rightShare', title: 'Comp.', num: true, render: (r) => pct(r.rightShare) },
      { key: 'abschange', title: 'Change', num: true, sort: (r) => Math.abs(r.change), render: (r) => change(r) },
      { key: 'pValue', title: 'p', num: true, sort: (r) => (r.pValue == null ? 2 : r.pValue),
        render: (r) => (r.pValue == null ? 'not tested' : r.pValue === 0 ? '≈ 0' : r.pValue < 1e-4 ? r.pValue.toExponential(1) : r.pValue.toFixed(4)) },
    ];
  }

  sides(s) {
    return {
      leftQuery: s.query, leftFrom: s.from, leftUntil: s.until,
      rightQuery: s.rightQuery || s.query, rightFrom: s.rightFrom || s.from, rightUntil: s.rightUntil || s.until,
    };
  }

  async show(state) {
    this.state = state;
    const p = this.sides(state);
    const q = this.q;
    q('.left-q').textContent = p.leftQuery;
    q('.left-r').textContent = `${rangeText(p.leftFrom)} .. ${rangeText(p.leftUntil)}`;
    q('.right-q').value = state.rightQuery;
    fitQuery(q('.right-q'));
    q('.right-from').value = state.rightFrom;
    q('.right-until').value = state.rightUntil;
    const key = JSON.stringify([p, state.maxNodes]);
    if (key !== this.key) {
      this.key = key;
      try {
        await this.load(p, state);
      } catch (e) {
        this.key = null; // a failed load is tried again next time
        throw e;
      }
    }
    await this.apply(state);
  }

  async load(p, state) {
    const type = parseQuery(p.leftQuery).type;
    this.unit = fmt.unitOf(type);
    this.tree = null;
    this.finder.reset();
    const [d, rep, lt, rt] = await Promise.all([
      api.renderDiff({ ...p, maxNodes: state.maxNodes }),
      api.diffReport({ ...p, limit: REPORT_LIMIT }),
      api.render({ query: p.leftQuery, from: p.leftFrom, until: p.leftUntil, maxNodes: 2 }),
      api.render({ query: p.rightQuery, from: p.rightFrom, until: p.rightUntil, maxNodes: 2 }),
    ]);
    this.app.showPartial(api.partialText(d) || api.partialText(rep));
    this.diff = d;
    this.report = rep;
    this.reportId = rep.reportId;
    this.params = p;
    this.tree = fromDiff(d.flamebearer);
    const diff = { leftTicks: d.leftTicks, rightTicks: d.rightTicks };
    this.graph.setTree(this.tree, { unit: this.unit, diff, maxNodes: state.maxNodes || 8192 });
    const cs = getComputedStyle(document.documentElement);
    this.timeline.set([
      { timeline: lt.timeline, color: cs.getPropertyValue('--baseline').trim() },
      { timeline: overlay(rt.timeline, lt.timeline), color: cs.getPropertyValue('--comparison').trim() },
    ], this.unit, fmt.isCPU(type), !!(lt.metadata && lt.metadata.aggregationType === 'average'));
    const sig = rep.functions.filter((f) => f.significant).length;
    this.table.setRows(rep.functions,
      `${sig} significant of ${rep.tested} tested (Welch's t, Holm, α=${rep.alpha}; ★ = significant)`);
    this.q('.footnote').textContent = `baseline ${fmt.value(d.leftTicks, this.unit)}, comparison ` +
      `${fmt.value(d.rightTicks, this.unit)}; widths: both sides together, colour: change of the share`;
    for (const a of this.q('.exports').querySelectorAll('a')) {
      a.href = api.url('/pyroscope/render-diff', { ...p, format: a.dataset.format });
      a.download = `flamedb-diff.${{ svg: 'svg', folded: 'txt', speedscope: 'speedscope.json' }[a.dataset.format]}`;
    }
  }

  // Search and highlight: no reload. Resolves once the table shows the
  // search's rows (asked of the node when the loaded ones are a cut).
  async apply(state) {
    if (!this.tree) return;
    const s = this.q('.search');
    if (s.value !== state.search) s.value = state.search;
    const match = state.fn ? (n) => n === state.fn : fmt.nameMatcher(state.search);
    this.graph.setHighlight(match);
    this.table.setSelected(state.fn);
    const rep = this.report;
    const finding = this.finder.find(state.search, rep.functionCount, rep.functions.length);
    const m = match ? matchedTotal(this.tree, match) : null;
    this.q('.matched').textContent = m ? `${m.frames} frame${m.frames === 1 ? '' : 's'} match` : '';
    await finding;
  }

  snapshot() {
    return {
      leftTicks: this.diff?.leftTicks, rightTicks: this.diff?.rightTicks,
      frames: this.graph.drawn().map((f, i) => ({ ...f, color: this.graph.frames[i] && this.graph.frameColor(this.graph.frames[i].n, this.graph.colors()) })),
      report: this.report ? this.report.functions : null,
      table_foot: this.q('.table-box .table-foot')?.textContent,
      table: [...(this.q('.table-box tbody')?.rows || [])].map((tr) => ({ name: tr.dataset.name, cells: [...tr.cells].map((c) => c.textContent) })),
    };
  }
}

function mark(r) {
  const s = document.createElement('span');
  s.className = 'sig ' + (r.significant ? (r.change > 0 ? 'up' : 'down') : '');
  s.textContent = r.significant ? '★' : r.pValue == null ? '·' : '';
  s.title = r.significant ? 'significant: stands out of the variation between windows'
    : r.pValue == null ? 'not tested: too few windows with data' : 'not significant';
  return s;
}

function change(r) {
  const s = document.createElement('span');
  s.className = r.change > 0 ? 'up' : r.change < 0 ? 'down' : '';
  s.textContent = (r.change > 0 ? '+' : '') + r.change.toFixed(2) + ' pp';
  return s;
}

// The comparison's timeline moved onto the baseline's start, so two ranges
// of different times (yesterday, today) overlay bucket by bucket.
function overlay(tl, base) {
  if (!tl || !base) return tl;
  return { ...tl, startTime: base.startTime };
}
