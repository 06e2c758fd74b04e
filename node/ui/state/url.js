// state/url.js — the page's state lives in the URL, so any view can be shared
// by copying the address (docs/ui.md lists the parameters).

export const DEFAULTS = {
  view: 'single', // single | sandwich | diff | tags | spans | profiles
  query: '',
  from: 'now-1h',
  until: 'now',
  maxNodes: '',
  rightQuery: '',
  rightFrom: '',
  rightUntil: '',
  search: '',
  fn: '', // the function of the sandwich view, or the one highlighted
  label: '', // tag explorer
  span: '', // span view: the id
  spanLabel: 'span_id', // span_id | trace_id
  profile: '', // profiles view: the id of the stored profile opened
  sandwich: '', // '1': the span or profile panel shows fn's sandwich in place
};

export function read(loc = window.location) {
  const p = new URLSearchParams(loc.search);
  const s = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) if (p.has(k)) s[k] = p.get(k);
  return s;
}

// The query string of a state, defaults left out.
export function encode(state) {
  const p = new URLSearchParams();
  for (const k of Object.keys(DEFAULTS)) {
    const v = state[k];
    if (v !== undefined && v !== null && v !== '' && v !== DEFAULTS[k]) p.set(k, v);
  }
  return '?' + p.toString();
}

// Writes state into the address bar: push adds a history entry (Back returns).
export function write(state, push = true) {
  const q = encode(state);
  if (q === window.location.search || (q === '?' && !window.location.search)) return;
  const f = push ? history.pushState : history.replaceState;
  f.call(history, null, '', window.location.pathname + q);
}

// ---- the query text: TYPE{selector} ----

const MATCHER = /([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;

// {type, matchers:[{name, op, value}]} of 'TYPE{a="b",...}'.
export function parseQuery(q) {
  const i = (q || '').indexOf('{');
  const type = (i < 0 ? q || '' : q.slice(0, i)).trim();
  const sel = i < 0 ? '' : q.slice(i);
  const matchers = [];
  for (const m of sel.matchAll(MATCHER)) {
    matchers.push({ name: m[1], op: m[2], value: m[3].replace(/\\(.)/g, '$1') });
  }
  return { type, matchers };
}

const quote = (v) => '"' + String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';

export function selectorText(matchers) {
  return '{' + matchers.map((m) => m.name + m.op + quote(m.value)).join(',') + '}';
}

export function formatQuery(type, matchers) {
  return (type || '') + selectorText(matchers);
}

// The query with the matcher on name set to value (removed when value is '').
export function withMatcher(q, name, value, op = '=') {
  const { type, matchers } = parseQuery(q);
  const rest = matchers.filter((m) => m.name !== name);
  if (value !== '' && value !== null && value !== undefined) {
    const at = matchers.findIndex((m) => m.name === name);
    rest.splice(at < 0 ? rest.length : at, 0, { name, op, value });
  }
  return formatQuery(type, rest);
}

export function matcherValue(q, name) {
  const m = parseQuery(q).matchers.find((x) => x.name === name && x.op === '=');
  return m ? m.value : '';
}
