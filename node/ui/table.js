// table.js — a sortable, filterable table of functions (the top table, the
// regression report, the tag explorer). Clicking a header sorts by it;
// clicking a row calls onRow(row); rows whose key is `selected` are marked.
// The filter compares as the flame graph's search (format.js, nameMatcher).
// When the rows are a cut of a longer list, the owner may hand in what the
// node found among all of it (setFilter's found, asked by a NodeSearch); the
// table then shows those.
import { nameMatcher } from './format.js';

const MAX_ROWS = 500; // rows put in the page (sorted, filtered first); the footer counts the rest
// When the loaded rows are a cut of the list, a search asks the node once
// typing paused this long; each new keystroke cancels the wait or the
// request before it.
const SEARCH_DELAY_MS = 200;

export class Table {
  // columns: [{key, title, render(row) -> string|Node, num, sort(row) -> value, cls}];
  // foundOrder: the order of the node's search answer, for the footer ('by self')
  constructor(container, opts) {
    this.el = container;
    this.opts = opts;
    this.rows = [];
    this.sortKey = opts.sortKey;
    this.sortDesc = opts.sortDesc !== false;
    this.filter = '';
    this.found = null;
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

  // found (only with a filter): the node's search of the whole list, as
  // {rows, matched, of} (matched: how many of `of` match; rows: the first of
  // them), or {pending: true, of} while it is asked, or {error, of}. Until
  // its rows are there, the loaded rows are filtered here.
  setFilter(text, found = null) {
    this.filter = text || '';
    this.found = this.filter ? found : null;
    this.render();
  }

  setSelected(key) {
    this.selected = key || '';
    this.render();
  }

  // The node's rows when it answered the search, else the loaded ones.
  searched() {
    return this.found && this.found.rows;
  }

  visible() {
    const key = this.opts.key || ((r) => r.name);
    let rows = this.searched() || this.rows;
    const match = nameMatcher(this.filter);
    if (match && !this.searched()) rows = rows.filter((r) => match(key(r)));
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
    this.foot.textContent = this.footer(rows);
  }

  // "N of M rows", or what the node's search found and how far it got.
  footer(rows) {
    const more = rows.length > MAX_ROWS ? ` (first ${MAX_ROWS} shown: search to narrow)` : '';
    const what = ` matching "${this.filter}"`;
    const f = this.found;
    if (!f) {
      return `${rows.length} of ${this.rows.length} rows${this.filter ? what : ''}${more}` +
        (this.note ? ' · ' + this.note : '');
    }
    if (f.rows) {
      const order = this.opts.foundOrder || 'by self';
      const top = f.matched > f.rows.length ? ` (the top ${f.rows.length} ${order} listed)` : '';
      return `${f.matched} of ${f.of} functions${what}${top}${more}`;
    }
    const local = `${rows.length} of the ${this.rows.length} loaded rows${what}`;
    if (f.pending) return `${local}; searching all ${f.of} functions…`;
    return `${local}; searching all ${f.of} functions failed: ${f.error}`;
  }
}

// The rows of a table's search, asked of the node when the loaded rows are
// a cut of a longer list (the top table: /api/top?search=, the regression
// report: /api/diff?search=). ask(text, signal) resolves to {rows, matched,
// of}: the first matching rows, how many match and out of how many.
export class NodeSearch {
  constructor(table, ask) {
    this.table = table;
    this.ask = ask;
    this.found = null; // the last answer, with its text
    this.finding = null; // {text, ctl, done} while one is asked
  }

  // New rows were loaded: the last answer is of other rows.
  reset() {
    this.stop();
    this.found = null;
  }

  // Shows text's rows in the table. The loaded rows are filtered in the page
  // when they are every function (of <= loaded); else the node searches all
  // of them after SEARCH_DELAY_MS without typing, the loaded rows filtered
  // meanwhile; a search already asked or answered is not asked again.
  // Returns a promise that settles once the node's rows are shown (rejected
  // with an AbortError when a newer search replaced it), or null.
  find(text, of, loaded) {
    if (!text || of <= loaded) {
      this.stop();
      this.table.setFilter(text);
      return null;
    }
    if (this.found && this.found.text === text) {
      this.stop();
      this.table.setFilter(text, this.found);
      return null;
    }
    if (this.finding && this.finding.text === text) return this.finding.done;
    this.stop();
    this.table.setFilter(text, { pending: true, of });
    const ctl = new AbortController();
    const done = delay(SEARCH_DELAY_MS, ctl.signal).then(() => this.ask(text, ctl.signal)).then((ans) => {
      if (ctl.signal.aborted) throw new DOMException('search replaced', 'AbortError');
      this.found = { text, ...ans };
      this.table.setFilter(text, this.found);
    }, (e) => {
      if (e.name === 'AbortError') throw e;
      this.table.setFilter(text, { error: e.message, of });
    }).finally(() => {
      if (this.finding && this.finding.ctl === ctl) this.finding = null;
    });
    this.finding = { text, ctl, done };
    return done;
  }

  // Cancels the wait or the request of a search no longer wanted.
  stop() {
    this.finding?.ctl.abort();
    this.finding = null;
  }
}

// Resolves after ms, or rejects with an AbortError when signal aborts first.
function delay(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new DOMException('search replaced', 'AbortError'));
    }, { once: true });
  });
}

// A cell with a bar behind its text, as long as frac (0..1) of the cell.
export function barCell(text, frac, color) {
  const span = document.createElement('span');
  span.className = 'bar-cell';
  span.textContent = text;
  const pct = Math.max(0, Math.min(100, frac * 100));
  // a 3 px edge in a strong colour (readable as a graphic, 3:1) under a
  // faint fill (the text on it stays readable)
  const fill = (c) => `linear-gradient(to right, ${c} ${pct}%, transparent ${pct}%)`;
  span.style.background = `${fill(color || 'var(--bar-edge)')} left bottom / 100% 3px no-repeat, ` +
    fill(color || 'var(--bar)');
  return span;
}
