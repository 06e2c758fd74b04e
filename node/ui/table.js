// table.js — a sortable, filterable table of functions (the top table, the
// regression report, the tag explorer). Clicking a header sorts by it;
// clicking a row calls onRow(row); rows whose key is `selected` are marked.

const MAX_ROWS = 500; // rows put in the page (sorted, filtered first); the footer counts the rest

export class Table {
  // columns: [{key, title, render(row) -> string|Node, num, sort(row) -> value, cls}]
  constructor(container, opts) {
    this.el = container;
    this.opts = opts;
    this.rows = [];
    this.sortKey = opts.sortKey;
    this.sortDesc = opts.sortDesc !== false;
    this.filter = '';
    this.selected = '';
    this.table = document.createElement('table');
    this.table.className = 'data ' + (opts.className || '');
    this.foot = document.createElement('div');
    this.foot.className = 'table-foot';
    container.replaceChildren(this.table, this.foot);
  }

  setRows(rows, note = '') {
    this.rows = rows;
    this.note = note;
    this.render();
  }

  setFilter(text) {
    this.filter = (text || '').toLowerCase();
    this.render();
  }

  setSelected(key) {
    this.selected = key || '';
    this.render();
  }

  visible() {
    const key = this.opts.key || ((r) => r.name);
    let rows = this.rows;
    if (this.filter) rows = rows.filter((r) => key(r).toLowerCase().includes(this.filter));
    const col = this.opts.columns.find((c) => c.key === this.sortKey);
    if (col) {
      const v = col.sort || ((r) => r[col.key]);
      const dir = this.sortDesc ? -1 : 1;
      rows = [...rows].sort((a, b) => {
        const x = v(a), y = v(b);
        if (x === y) return 0;
        return (x < y ? -1 : 1) * dir;
      });
    }
    return rows;
  }

  render() {
    const key = this.opts.key || ((r) => r.name);
    const head = document.createElement('thead');
    const tr = document.createElement('tr');
    for (const c of this.opts.columns) {
      const th = document.createElement('th');
      th.textContent = c.title + (c.key === this.sortKey ? (this.sortDesc ? ' ▼' : ' ▲') : '');
      th.className = (c.num ? 'num ' : '') + (c.cls || '');
      th.dataset.key = c.key;
      th.title = 'sort by ' + c.title;
      th.onclick = () => {
        if (this.sortKey === c.key) this.sortDesc = !this.sortDesc;
        else { this.sortKey = c.key; this.sortDesc = !!c.num; }
        this.render();
      };
      tr.append(th);
    }
    head.append(tr);
    const body = document.createElement('tbody');
    const rows = this.visible();
    for (const r of rows.slice(0, MAX_ROWS)) {
      const row = document.createElement('tr');
      row.dataset.name = key(r);
      if (this.selected && key(r) === this.selected) row.className = 'selected';
      for (const c of this.opts.columns) {
        const td = document.createElement('td');
        td.className = (c.num ? 'num ' : '') + (c.cls || '');
        const v = c.render ? c.render(r) : r[c.key];
        if (v instanceof Node) td.append(v);
        else td.textContent = v ?? '';
        if (!c.num) td.title = key(r);
        row.append(td);
      }
      row.onclick = (e) => this.opts.onRow?.(r, e);
      body.append(row);
    }
    this.table.replaceChildren(head, body);
    const more = rows.length > MAX_ROWS ? ` (first ${MAX_ROWS} shown: search to narrow)` : '';
    const filtered = this.filter ? ` matching "${this.filter}"` : '';
    this.foot.textContent = `${rows.length} of ${this.rows.length} rows${filtered}${more}` +
      (this.note ? ' · ' + this.note : '');
  }
}

// A cell with a bar behind its text, as long as frac (0..1) of the cell.
export function barCell(text, frac, color) {
  const span = document.createElement('span');
  span.className = 'bar-cell';
  span.textContent = text;
  const pct = Math.max(0, Math.min(100, frac * 100));
  span.style.background = `linear-gradient(to right, ${color || 'var(--bar)'} ${pct}%, transparent ${pct}%)`;
  return span;
}
