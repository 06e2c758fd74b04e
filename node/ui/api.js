// api.js — the node's HTTP API as promises. Every call answers parsed JSON or
// throws an ApiError whose message is the node's own reason (docs/api.md:
// errors are {"code", "message"}), so the page can show it as it is.

export class ApiError extends Error {
  constructor(status, code, message, path) {
    super(message);
    this.status = status;
    this.code = code;
    this.path = path;
  }
  toString() {
    return `${this.path}: ${this.status} ${this.code}: ${this.message}`;
  }
}

// URL of an endpoint with its parameters (empty ones left out).
export function url(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

// The token of a node started with --auth-file: typed into the sign-in form,
// kept for this tab only (sessionStorage), sent as a Bearer token.
const TOKEN_KEY = 'flamedb-token';
export const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// The headers of every call. X-Flamedb-UI asks a node with --auth-file to
// answer 401 without the Basic challenge, so the browser shows no password
// dialog of its own and the page's sign-in form asks instead.
function headers(accept) {
  const h = { Accept: accept, 'X-Flamedb-UI': '1' };
  if (token()) h.Authorization = 'Bearer ' + token();
  return h;
}

// A busy node (503: its query memory or connections are full for now)
// answers with Retry-After: the call is made again after that many seconds,
// up to BUSY_TRIES times in all, before its reason is shown. A page asks for
// its flame graph, table and timeline at once; on a large profile their
// merges can fill query-memory-bytes together for a moment.
const BUSY_TRIES = 4;
const BUSY_WAIT_MAX_S = 5;

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new DOMException('aborted', 'AbortError'));
    const t = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new DOMException('aborted', 'AbortError'));
      }, { once: true });
    }
  });
}

async function fetchRetrying(path, params, signal) {
  for (let attempt = 1; ; attempt++) {
    let resp;
    try {
      resp = await fetch(url(path, params), { signal, headers: headers('application/json') });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', `the node did not answer (${e.message})`, path);
    }
    const after = resp.headers.get('Retry-After');
    if (resp.status !== 503 || after === null || attempt >= BUSY_TRIES) return resp;
    const s = Math.min(Math.max(Number(after) || 1, 0.2), BUSY_WAIT_MAX_S);
    await resp.text(); // the reason of a busy answer is not shown: asked again
    await sleep(s * 1000, signal);
  }
}

// GET path?params as JSON. The answer gets a `_partial` member holding the
// X-Flamedb-Partial header when the cluster answered partially, and a
// `_timing` member holding its Server-Timing header (where the node spent
// the time: docs/api.md).
export async function getJSON(path, params = {}, signal) {
  const resp = await fetchRetrying(path, params, signal);
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    if (resp.ok) throw new ApiError(resp.status, 'bad_json', 'the answer is not JSON', path);
  }
  if (!resp.ok) {
    const code = (body && body.code) || 'http_' + resp.status;
    const msg = (body && body.message) || text.slice(0, 300) || resp.statusText;
    throw new ApiError(resp.status, code, msg, path);
  }
  const partial = resp.headers.get('X-Flamedb-Partial');
  const timing = resp.headers.get('Server-Timing');
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    if (partial) body._partial = partial;
    if (timing) body._timing = timing;
  } else if (partial) {
    return Object.assign([], body, { _partial: partial });
  }
  return body;
}

export const render = (p, signal) => getJSON('/pyroscope/render', { format: 'json', ...p }, signal);
export const renderDiff = (p, signal) => getJSON('/pyroscope/render-diff', { format: 'json', ...p }, signal);
export const top = (p, signal) => getJSON('/api/top', p, signal);
export const diffReport = (p, signal) => getJSON('/api/diff', p, signal);
export const labelNames = (p, signal) => getJSON('/pyroscope/label-names', p, signal);
export const labelValues = (p, signal) => getJSON('/pyroscope/label-values', p, signal);
export const labelShares = (p, signal) => getJSON('/api/label-shares', p, signal);
export const profiles = (p, signal) => getJSON('/api/profiles', p, signal);

// Downloads an export (pprof, folded, SVG, speedscope) through fetch, so the
// token goes along; a plain link would arrive without it.
export async function download(href, name) {
  const resp = await fetch(href, { headers: headers('*/*') });
  if (!resp.ok) {
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* not JSON: the text is the reason */ }
    throw new ApiError(resp.status, (body && body.code) || 'http_' + resp.status,
      (body && body.message) || text.slice(0, 300), href.split('?')[0]);
  }
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await resp.blob());
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// Where one stored profile opens (served by GET /api/profiles/ID).
export const profileURL = (id, p = { format: 'json' }) => url('/api/profiles/' + encodeURIComponent(id), p);
export const profile = (id, p, signal) =>
  getJSON('/api/profiles/' + encodeURIComponent(id), { format: 'json', ...p }, signal);

// An answer's Server-Timing as { total: '1.83 ms', steps: 'queue 0.08 ms,
// share 0.69 ms, ...' }, or null without one.
export function timingText(ans) {
  if (!ans || !ans._timing) return null;
  const steps = [];
  let total = null;
  for (const part of ans._timing.split(',')) {
    const [name, dur] = part.trim().split(';dur=');
    if (!name || dur === undefined || !isFinite(+dur)) continue;
    if (name === 'total') total = (+dur).toFixed(2) + ' ms';
    else steps.push(`${name} ${(+dur).toFixed(2)} ms`);
  }
  return total === null ? null : { total, steps: steps.join(', ') };
}

// A short sentence for a partial answer: from the JSON members when present,
// else the header.
export function partialText(ans) {
  if (!ans || (!ans.partial && !ans._partial)) return '';
  if (ans.missing_share !== undefined) {
    const pct = (100 * ans.missing_share).toFixed(1);
    const nodes = (ans.missing_nodes || []).join(', ') || 'unknown';
    return `partial answer: ${ans.missing_ranges} token range(s), ${pct}% of the ring, had no live replica (nodes: ${nodes}); totals cover what answered`;
  }
  return `partial answer: ${ans._partial || 'some ranges did not answer'}`;
}
