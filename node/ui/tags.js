// tags.js — the tag explorer: pick a label, see each value's share of the
// selection (/api/label-shares) over time, open a value as its own view or
// as the comparison side of a diff.
import * as api from './api.js';
import * as fmt from './format.js';
import { Table, barCell } from './table.js';
import { Timeline } from './timeline.js';
import { parseQuery, withMatcher } from './state/url.js';

const COLORS = ['#4e92f9', '#f2914f', '#65c5db', '#d683ce', '#9ac48a', '#ea6460', '#f2c96d', '#806eb7'];

export class TagsView {
  constructor(root, app) {
    this.app = app;
    root.innerHTML = `
      <div class="toolbar"><label>label <select class="label" aria-label="label"></select></label>
        <span class="tags-total"></span></div>
      <div class="timeline-box"></div>
      <div class="table-box"></div>`;
    this.q = (s) => root.querySelector(s);
    this.q('.label').onchange = (e) => app.setState({ label: e.target.value });
    this.timeline = new Timeline(this.q('.timeline-box'), {
      onSelect: (f, u) => app.setState({ from: String(f), until: String(u) }),
    });
    this.table = new Table(this.q('.table-box'), {
      className: 'tags', sortKey: 'share', key: (r) => r.value, columns: [
        { key: 'color', title: '', render: (r) => swatch(r.color) },
        { key: 'value', title: 'Value', render: (r) => (r.value === '' ? '(no label)' : r.value) },
        { key: 'share', title: 'Share', num: true, render: (r) => barCell(fmt.percent(r.share, 1), r.share) },
        { key: 'total', title: 'Total', num: true, render: (r) => fmt.value(r.total, this.unit) },
        { key: 'open', title: '', render: (r) => this.actions(r) },
      ],
    });
  }

  actions(r) {
    const span = document.createElement('span');
    const open = document.createElement('button');
    open.textContent = 'open';
    open.title = `flame graph of ${this.label}="${r.value}"`;
    open.onclick = () => this.app.setState({ view: 'single', query: this.withValue(r.value), label: '' });
    const cmp = document.createElement('button');
    cmp.textContent = 'compare';
    cmp.title = `diff: the whole selection (baseline) against ${this.label}="${r.value}"`;
    cmp.onclick = () => this.app.setState({ view: 'diff', rightQuery: this.withValue(r.value) });
    span.append(open, ' ', cmp);
    return span;
  }

  withValue(v) {
    return withMatcher(this.state.query, this.label, v);
  }

  async show(state) {
    this.state = state;
    const type = parseQuery(state.query).type;
    this.unit = fmt.unitOf(type);
    const names = (await api.labelNames({ from: state.from, until: state.until }))
      .filter((n) => !n.startsWith('__'));
    const label = state.label || (names.includes('service_name') ? 'service_name' : names[0] || '');
    this.label = label;
    const sel = this.q('.label');
    sel.replaceChildren(...names.map((n) => new Option(n, n)));
    sel.value = label;
    if (!label) { // nothing pushed yet (label names are not limited to the range)
      this.values = [];
      this.q('.tags-total').textContent = 'no labels yet: push a profile (docs/api.md, POST /ingest) and reload';
      this.timeline.set([], this.unit, fmt.isCPU(type), false);
      this.table.setRows([]);
      return;
    }
    const ans = await api.labelShares({ query: state.query, label, from: state.from, until: state.until });
    this.app.showPartial(api.partialText(ans));
    ans.values.forEach((v, i) => { v.color = COLORS[i % COLORS.length]; });
    this.values = ans.values;
    // a gauge (in-use memory): each value is its average profile, not a total
    const gauge = ans.aggregationType === 'average';
    const whole = gauge ? 'average profile in use' : 'total';
    // a gauge's shares are of the values' averages together, not of the
    // selection's average profile (two pods of 405 and 401 MiB: 403 MiB)
    const sum = ans.values.reduce((a, v) => a + v.total, 0);
    const of = gauge && ans.values.length > 1 ? `; shares of the values' averages, ${fmt.value(sum, this.unit)} together` : '';
    this.q('.tags-total').textContent = ans.values.length === 0
      ? 'no samples match this selection in this range: widen the range or change the selector'
      : `${fmt.count(ans.values.length, 'value')} of ${label}, ${whole} ${fmt.value(ans.total, this.unit)}${of}`;
    this.timeline.set(ans.values.slice(0, COLORS.length).map((v) => ({ timeline: v.timeline, color: v.color })),
      this.unit, fmt.isCPU(type), gauge);
    this.table.opts.columns.find((c) => c.key === 'total').title = gauge ? 'Average in use' : 'Total';
    this.table.setRows(ans.values);
  }

  snapshot() {
    return { label: this.label, values: (this.values || []).map(({ value, share, total }) => ({ value, share, total })) };
  }
}

function swatch(color) {
  const i = document.createElement('i');
  i.className = 'swatch';
  i.style.background = color;
  return i;
}
