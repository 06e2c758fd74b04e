// querybar.js — the query bar: profile type, service, label selector (with
// autocomplete of label names and values), time range and maxNodes. It
// edits a copy of the state and hands it to onApply.
import * as api from './api.js';
import { parseQuery, selectorText, withMatcher, matcherValue } from './state/url.js';
import { isCPU } from './format.js';

export const PRESETS = ['15m', '1h', '6h', '24h', '7d', '30d'];
const $ = (id) => document.getElementById(id);

// unix seconds <-> the value of an <input type=datetime-local> (local time)
function toLocalInput(sec) {
  const d = new Date(sec * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
const fromLocalInput = (v) => Math.floor(new Date(v).getTime() / 1000);

// Unix seconds of a from/until parameter (now, now-1h, unix s/ms/µs/ns,
// YYYYMMDD, 2026-12-03T20:15:00Z, 2026-12-03 20:15; UTC without a zone, as
// the node reads them), or NaN.
export function toSeconds(v, now = Date.now() / 1000) {
  if (v === 'now' || v === '') return Math.floor(now);
  const m = /^now-(\d+)([smhdw])$/.exec(v);
  if (m) return Math.floor(now - m[1] * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]]);
  const ymd = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  if (ymd && Number(ymd[1]) >= 1970 && Number(ymd[1]) <= 2999) {
    const t = Date.UTC(ymd[1], ymd[2] - 1, ymd[3]);
    if (new Date(t).getUTCDate() === Number(ymd[3])) return t / 1000;
  }
  const dt = /^(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)([Zz]|[+-]\d{2}:\d{2})?)?$/.exec(v);
  if (dt) return Math.floor(Date.parse(`${dt[1]}T${dt[2] || '00:00'}${(dt[3] || 'Z').toUpperCase()}`) / 1000);
  let n = Number(v);
  if (!Number.isFinite(n)) return NaN;
  while (n > 1e11) n /= 1000; // ms, µs, ns
  return Math.floor(n);
}

export class QueryBar {
  constructor(onApply) {
    this.onApply = onApply;
    this.valuesCache = new Map();
    this.namesP = null;
    this.el = { type: $('q-type'), service: $('q-service'), sel: $('q-selector'),
      range: $('q-range'), from: $('q-from'), until: $('q-until'), maxNodes: $('q-maxnodes'),
      apply: $('q-apply'), suggest: $('q-suggest') };
    for (const p of PRESETS) this.el.range.add(new Option('last ' + p, p));
    this.el.range.add(new Option('absolute…', 'abs'));
    this.el.range.onchange = () => this.rangeChanged();
    this.el.type.onchange = () => this.apply();
    this.el.service.onchange = () => {
      this.el.sel.value = selectorOf(withMatcher('x' + this.el.sel.value, 'service_name', this.el.service.value));
      this.fitSelector();
      this.apply();
    };
    this.el.apply.onclick = () => this.apply();
    this.el.sel.addEventListener('keydown', (e) => this.selKey(e));
    this.el.sel.addEventListener('input', () => { this.fitSelector(); this.suggest(); });
    this.el.sel.addEventListener('focus', () => this.suggest());
    this.el.sel.addEventListener('blur', () => setTimeout(() => this.hideSuggest(), 150));
    this.el.maxNodes.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.apply(); });
  }

  // Fills the pickers; picks a type and service when the state has none.
  async load(state) {
    this.state = state;
    const { type } = parseQuery(state.query);
    this.el.sel.value = selectorOf(state.query);
    this.fitSelector();
    this.showRange(state);
    this.el.maxNodes.value = state.maxNodes;
    const range = { from: state.from, until: state.until };
    const types = await api.labelValues({ label: '__profile_type__', ...range });
    fillSelect(this.el.type, types, type, '', typeLabel);
    let chosen = type;
    if (!chosen && types.length) chosen = types.find(isCPU) || types[0];
    this.el.type.value = chosen;
    const services = await api.labelValues({ label: 'service_name', ...range });
    fillSelect(this.el.service, ['', ...services], matcherValue(state.query, 'service_name'), '(any service)');
    if (!type && chosen) {
      let q = chosen + (this.el.sel.value || '{}');
      if (!matcherValue(q, 'service_name') && services.length) q = withMatcher(q, 'service_name', services[0]);
      return q; // the query the page should open
    }
    return null;
  }

  // Shows state in the inputs (after Back/Forward or a change made by a view).
  sync(state) {
    this.state = state;
    const { type } = parseQuery(state.query);
    if (type && [...this.el.type.options].some((o) => o.value === type)) this.el.type.value = type;
    if (document.activeElement !== this.el.sel) this.el.sel.value = selectorOf(state.query);
    this.fitSelector();
    const svc = matcherValue(state.query, 'service_name');
    if ([...this.el.service.options].some((o) => o.value === svc)) this.el.service.value = svc;
    this.el.maxNodes.value = state.maxNodes;
    this.showRange(state);
  }

  // The selector box is at least as wide as its text (up to the row): with
  // the absolute range's two date boxes the row's last controls wrap below
  // instead of cutting the selector (version="v1" would not show).
  fitSelector() {
    const chars = Math.max(20, this.el.sel.value.length + 3);
    this.el.sel.parentElement.style.minWidth = `min(100%, ${chars}ch)`;
  }

  showRange(s) {
    const m = /^now-(\d+[mhd])$/.exec(s.from);
    const preset = m && s.until === 'now' && PRESETS.includes(m[1]) ? m[1] : 'abs';
    this.el.range.value = preset;
    const abs = preset === 'abs';
    this.el.from.hidden = this.el.until.hidden = !abs;
    if (abs) {
      this.el.from.value = toLocalInput(toSeconds(s.from));
      this.el.until.value = toLocalInput(toSeconds(s.until));
    }
  }

  rangeChanged() {
    if (this.el.range.value === 'abs') {
      this.showRange({ from: String(toSeconds(this.state.from)), until: String(toSeconds(this.state.until)) });
      return; // wait for Apply
    }
    this.apply();
  }

  current() {
    const s = { ...this.state };
    s.query = this.el.type.value + (this.el.sel.value.trim() || '{}');
    if (this.el.range.value === 'abs') {
      s.from = String(fromLocalInput(this.el.from.value));
      s.until = String(fromLocalInput(this.el.until.value));
    } else {
      s.from = 'now-' + this.el.range.value;
      s.until = 'now';
    }
    s.maxNodes = this.el.maxNodes.value.trim();
    return s;
  }

  apply() {
    this.hideSuggest();
    this.onApply(this.current());
  }

  // ---- autocomplete ----

  // Only the latest call shows its list: answers to earlier keystrokes may
  // arrive after it and must not replace it.
  async suggest() {
    const seq = (this.suggestSeq = (this.suggestSeq || 0) + 1);
    const el = this.el.sel;
    const before = el.value.slice(0, el.selectionStart);
    const val = /([A-Za-z_][\w.]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(before);
    const nm = val ? null : /[{,]\s*([A-Za-z_][\w.]*)?$/.exec(before);
    if (!val && !nm) return this.hideSuggest();
    let items, replace;
    try {
      if (val) {
        const values = await this.values(val[1]);
        items = values.filter((v) => v.startsWith(val[3])).map((v) => ({ text: v, insert: v + '"' }));
        replace = val[3].length;
      } else {
        this.namesP ||= api.labelNames({ from: this.state.from, until: this.state.until });
        const names = await this.namesP;
        const p = nm[1] || '';
        items = names.filter((n) => n.startsWith(p) && n !== '__name__').map((n) => ({ text: n, insert: n + '="' }));
        replace = p.length;
      }
    } catch (e) {
      this.namesP = null; // try again on the next keystroke
      items = [];
      replace = 0;
    }
    if (seq !== this.suggestSeq) return;
    this.showSuggest(items.slice(0, 50), replace);
  }

  async values(label) {
    if (!this.valuesCache.has(label)) {
      const range = { from: this.state.from, until: this.state.until };
      const p = api.labelValues({ label, ...range });
      this.valuesCache.set(label, p);
      p.catch(() => this.valuesCache.delete(label)); // not cached when it failed
    }
    return this.valuesCache.get(label);
  }

  showSuggest(items, replace) {
    const ul = this.el.suggest;
    this.items = items;
    this.replace = replace;
    this.active = 0;
    ul.replaceChildren(...items.map((it, i) => {
      const li = document.createElement('li');
      li.textContent = it.text;
      li.onmousedown = (e) => { e.preventDefault(); this.pick(i); };
      return li;
    }));
    ul.hidden = items.length === 0;
    this.mark();
  }

  mark() {
    [...this.el.suggest.children].forEach((li, i) => li.classList.toggle('active', i === this.active));
  }

  hideSuggest() {
    this.suggestSeq = (this.suggestSeq || 0) + 1; // a list still on its way stays closed
    this.el.suggest.hidden = true;
    this.items = [];
  }

  pick(i) {
    const el = this.el.sel, it = this.items[i];
    if (!it) return;
    const at = el.selectionStart;
    let after = el.value.slice(at);
    if (it.insert.endsWith('"') && after.startsWith('"')) after = after.slice(1);
    el.value = el.value.slice(0, at - this.replace) + it.insert + after;
    const pos = at - this.replace + it.insert.length;
    el.setSelectionRange(pos, pos);
    this.hideSuggest();
    this.suggest();
  }

  selKey(e) {
    const open = !this.el.suggest.hidden && this.items.length;
    if (open && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      const n = this.items.length;
      this.active = (this.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.mark();
      e.preventDefault();
    } else if (open && (e.key === 'Tab' || (e.key === 'Enter' && !e.ctrlKey))) {
      this.pick(this.active);
      e.preventDefault();
    } else if (e.key === 'Enter') {
      this.apply();
    } else if (e.key === 'Escape') {
      this.hideSuggest();
    }
  }
}

// The selector part of a query ("{...}").
// The selector as the query holds it, not rebuilt from what parses: a
// typo the node refuses (a missing '}', an unknown operator) stays in view
// beside its error instead of showing as a selector that would work.
function selectorOf(q) {
  const i = (q || '').indexOf('{');
  return i < 0 ? selectorText([]) : q.slice(i).trim();
}

function fillSelect(sel, values, current, emptyLabel, label = (v) => v) {
  if (current && !values.includes(current)) values = [...values, current];
  sel.replaceChildren(...values.map((v) => {
    const o = new Option(v === '' ? emptyLabel : label(v, values), v);
    o.title = v;
    return o;
  }));
  sel.value = current || '';
}

// A profile type as the picker shows it: "process_cpu · cpu" for
// process_cpu:cpu:nanoseconds:cpu:nanoseconds (the whole id is 43 characters
// and would be cut), with the unit added when another type of the list has
// the same name and sample type.
export function typeLabel(type, all = []) {
  const f = type.split(':');
  if (f.length < 3) return type;
  const same = all.filter((t) => t !== type && t.split(':').slice(0, 2).join(':') === f[0] + ':' + f[1]);
  return `${f[0]} · ${f[1]}` + (same.length ? ` (${f.slice(2).join(':')})` : '');
}
