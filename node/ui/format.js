// format.js — numbers with their units, short function names, and the
// package colours of frames.

function trim(x, digits = 2) {
  return String(+x.toFixed(digits));
}

const TIME = [
  [86400e9, 'day'], [3600e9, 'h'], [60e9, 'min'], [1e9, 's'], [1e6, 'ms'], [1e3, 'µs'], [1, 'ns'],
];
const BYTES = [[1 << 30, 'GiB'], [1 << 20, 'MiB'], [1 << 10, 'KiB'], [1, 'B']];
const COUNT = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'K'], [1, '']];

// "1.23 s", "456 ms", "1.5 MiB", "12.3 K" from a value in the profile's unit.
export function value(v, unit) {
  const table = unit === 'nanoseconds' ? TIME : unit === 'bytes' ? BYTES : COUNT;
  const a = Math.abs(v);
  for (const [div, name] of table) {
    if (a >= div || div === 1) return trim(v / div) + (name ? ' ' + name : '');
  }
  return String(v);
}

// "1 value", "2 values": a count with its noun, singular for one.
export function count(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function percent(part, whole) {
  if (!whole) return '0%';
  const p = (100 * part) / whole;
  if (p > 0 && p < 0.01) return '< 0.01%';
  return trim(p) + '%';
}

// Cores with the digits that matter: 2.5, 0.0123, 0.00000032 (not a rounded
// 0, and not 3.2e-7, which a reader has to decode; a traced request or a
// quiet service over an hour is a few millionths of a core).
export function coresNumber(c) {
  if (c > 0 && c < 1e-12) return c.toExponential(1);
  if (c > 0 && c < 1e-4) {
    const decimals = 1 - Math.floor(Math.log10(c)); // two significant digits
    return c.toFixed(decimals).replace(/0+$/, '');
  }
  return trim(c, c < 0.1 ? 4 : 2);
}

export function cores(c) {
  return coresNumber(c) + (c === 1 ? ' core' : ' cores');
}

// Is a profile type a CPU time (so values convert to cores)? The sample type
// is the second field of name:sample_type:sample_unit:period_type:period_unit.
export function isCPU(type) {
  const f = (type || '').split(':');
  return f.length >= 3 && f[1] === 'cpu' && f[2] === 'nanoseconds';
}

export function unitOf(type) {
  const f = (type || '').split(':');
  return f[2] || '';
}

export function time(unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// ---- names ----

// The package of a function name: Go "a/b/pkg.Func" -> "a/b/pkg", "pkg.Func"
// -> "pkg"; C++/Rust "ns::Type::f" -> "ns::Type"; Java "com.x.Cls.m" -> "com".
export function packageOf(name) {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot > 0) return name.slice(0, dot);
  const colons = name.lastIndexOf('::');
  if (colons > 0) return name.slice(0, colons);
  return slash > 0 ? name.slice(0, slash) : '';
}

// Names from longest to shortest, each still recognisable:
// "github.com/acme/shop/cart.(*Cart).Add" -> "g.c/a/s/cart.(*Cart).Add"
// -> "cart.(*Cart).Add" -> "(*Cart).Add" -> "Add".
export function shortNames(name) {
  const out = [name];
  const add = (s) => { if (s && s !== out[out.length - 1]) out.push(s); };
  const slash = name.lastIndexOf('/');
  if (slash > 0) {
    const dirs = name.slice(0, slash).split('/').map((p) => p.split('.').map((x) => x[0] || '').join('.'));
    add(dirs.join('/') + name.slice(slash));
    add(name.slice(slash + 1));
  }
  let rest = out[out.length - 1];
  for (let i = 0; i < 8; i++) {
    const cut = rest.search(/\.|::/);
    if (cut <= 0) break;
    const next = rest.slice(cut + (rest[cut] === ':' ? 2 : 1));
    if (!next) break;
    add(next);
    rest = next;
  }
  return out;
}

// The longest short name that fits in chars characters, or a cut one with an
// ellipsis, or '' when not even 3 characters fit.
export function fit(name, chars) {
  if (chars < 3) return '';
  for (const s of shortNames(name)) if (s.length <= chars) return s;
  const last = shortNames(name).pop();
  return last.slice(0, chars - 1) + '…';
}

// The search's comparison (the flame graph's highlight, the tables' filter)
// and the node's /api/top?search=, so the graph and the table find the same
// functions: a substring of the name, the letters A-Z matching a-z and no
// other character folded (JavaScript's toLowerCase folds far more, which a
// node could not match exactly). A function of name -> bool, or null for no
// search. Each name is folded once per matcher: a draw asks for every frame.
const foldCase = (s) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
export function nameMatcher(text) {
  if (!text) return null;
  const t = foldCase(text);
  const seen = new Map();
  return (name) => {
    let r = seen.get(name);
    if (r === undefined) seen.set(name, (r = foldCase(name).includes(t)));
    return r;
  };
}

// ---- colours ----

function murmur3(s) {
  let h = 0;
  const data = new TextEncoder().encode(s);
  const n = data.length & ~3;
  const c1 = 0xcc9e2d51, c2 = 0x1b873593;
  for (let i = 0; i < n; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2);
    h ^= k; h = (h << 13) | (h >>> 19); h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (data.length & 3) {
    case 3: k ^= data[n + 2] << 16; // fallthrough
    case 2: k ^= data[n + 1] << 8; // fallthrough
    case 1:
      k ^= data[n]; k = Math.imul(k, c1); k = (k << 15) | (k >>> 17); k = Math.imul(k, c2); h ^= k;
  }
  h ^= data.length;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
  return h >>> 0;
}

const PALETTE = [
  'hsl(24,69%,60%)', 'hsl(34,65%,65%)', 'hsl(194,52%,61%)', 'hsl(163,45%,55%)',
  'hsl(211,48%,60%)', 'hsl(246,40%,65%)', 'hsl(305,63%,79%)', 'hsl(47,100%,73%)',
  'rgb(183,219,171)', 'rgb(244,213,152)', 'rgb(78,146,249)', 'rgb(249,186,143)',
  'rgb(242,145,145)', 'rgb(130,181,216)', 'rgb(229,168,226)', 'rgb(174,162,224)',
  'rgb(154,196,138)', 'rgb(242,201,109)', 'rgb(101,197,219)', 'rgb(249,147,78)',
  'rgb(234,100,96)', 'rgb(81,149,206)', 'rgb(214,131,206)', 'rgb(128,110,183)',
];
const colorCache = new Map();

// Frames of one package share a colour, stable across loads and nodes.
export function packageColor(name) {
  const pkg = packageOf(name) || name;
  let c = colorCache.get(pkg);
  if (!c) {
    c = PALETTE[murmur3(pkg) % PALETTE.length];
    colorCache.set(pkg, c);
  }
  return c;
}

// Diff colour: d in [-100, 100] (relative change of the share), green shrank
// -> grey -> red grew.
export function diffColor(d) {
  const t = Math.max(-1, Math.min(1, d / 100));
  const grey = [148, 142, 142];
  const end = t >= 0 ? [200, 0, 0] : [0, 170, 0];
  const a = Math.abs(t);
  const mix = grey.map((g, i) => Math.round(g + (end[i] - g) * a));
  return `rgb(${mix[0]},${mix[1]},${mix[2]})`;
}
