// tree.js — call trees from the node's flamebearer answers, and what the
// views compute from them (sandwich, search share). A node is
// {name, total, self, children[], parent, depth}; diff nodes also carry
// left/right totals and selves (lt, ls, rt, rs) and total = lt + rt.

function node(name, total, self) {
  return { name, total, self, children: [], parent: null, depth: 0 };
}

// Decodes levels of `step` integers per node whose offsets are delta-encoded
// per level (offset fields at offs); fields(arr, j) makes the node.
function decode(fb, step, offs, make) {
  const names = fb.names;
  let prevLevel = [];
  let root = null;
  for (let d = 0; d < fb.levels.length; d++) {
    const arr = fb.levels[d];
    const prevEnd = offs.map(() => 0);
    const cur = [];
    let p = 0;
    for (let j = 0; j + step <= arr.length; j += step) {
      const xs = offs.map((o, k) => prevEnd[k] + arr[j + o]);
      const n = make(arr, j, names[arr[j + step - 1]] ?? '?');
      offs.forEach((o, k) => { prevEnd[k] = xs[k] + arr[j + o + 1]; });
      n._x = xs.reduce((a, b) => a + b, 0);
      if (d === 0) {
        root = n;
      } else {
        while (p < prevLevel.length - 1 && n._x >= prevLevel[p]._x + prevLevel[p].total) p++;
        const parent = prevLevel[p];
        if (!parent) continue;
        n.parent = parent;
        n.depth = d;
        parent.children.push(n);
      }
      cur.push(n);
    }
    prevLevel = cur;
  }
  return root || node('total', 0, 0);
}

// The tree of a /pyroscope/render answer (single format).
export function fromFlamebearer(fb) {
  return decode(fb, 4, [0], (a, j, name) => node(name, a[j + 1], a[j + 2]));
}

// The tree of a /pyroscope/render-diff answer (double format): widths are
// left + right totals, as both sides drawn in one picture.
export function fromDiff(fb) {
  return decode(fb, 7, [0, 3], (a, j, name) => {
    const n = node(name, a[j + 1] + a[j + 4], a[j + 2] + a[j + 5]);
    n.lt = a[j + 1]; n.ls = a[j + 2]; n.rt = a[j + 4]; n.rs = a[j + 5];
    return n;
  });
}

// Self and total per function over the tree, as /api/top answers them: a
// function's total counts each stack once (not again under itself, so
// recursion is not counted twice). Sorted by self, largest first.
export function functionTotals(root) {
  const acc = new Map();
  const onPath = new Map(); // name -> frames of it on the current path
  const visit = (n) => {
    if (n !== root) {
      let f = acc.get(n.name);
      if (!f) acc.set(n.name, (f = { name: n.name, self: 0, total: 0 }));
      f.self += n.self;
      if (!onPath.get(n.name)) f.total += n.total;
      onPath.set(n.name, (onPath.get(n.name) || 0) + 1);
    }
    for (const c of n.children) visit(c);
    if (n !== root) onPath.set(n.name, onPath.get(n.name) - 1);
  };
  visit(root);
  return [...acc.values()].sort((a, b) => b.self - a.self || b.total - a.total);
}

export function walk(root, fn) {
  const stack = [root];
  while (stack.length) {
    const n = stack.pop();
    if (fn(n) === false) continue; // false: skip the subtree
    for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
  }
}

// Sum of the totals of the frames that match, each stack counted once
// (a match under a match is already inside it).
export function matchedTotal(root, match) {
  let total = 0, frames = 0;
  walk(root, (n) => { if (n !== root && match(n.name)) frames++; });
  walk(root, (n) => {
    if (n !== root && match(n.name)) { total += n.total; return false; }
    return true;
  });
  return { total, frames };
}

function mergeInto(dst, src) {
  dst.total += src.total;
  dst.self += src.self;
  for (const c of src.children) {
    let d = dst.children.find((x) => x.name === c.name);
    if (!d) {
      d = node(c.name, 0, 0);
      d.parent = dst;
      d.depth = dst.depth + 1;
      dst.children.push(d);
    }
    mergeInto(d, c);
  }
}

// The frames named fname that are not inside another frame of that name.
function topmost(root, fname) {
  const out = [];
  walk(root, (n) => {
    if (n.name === fname && n !== root) { out.push(n); return false; }
    return true;
  });
  return out;
}

// Sandwich of one function: callees (every call of it merged, the function
// at the root) and callers (the stacks leading to it, the function at the
// root, its callers above it once drawn upside down).
export function sandwich(root, fname) {
  const calls = topmost(root, fname);
  const callees = node(fname, 0, 0);
  for (const c of calls) mergeInto(callees, c);
  const callers = node(fname, 0, 0);
  for (const c of calls) {
    callers.total += c.total;
    let cur = callers;
    for (let a = c.parent; a && a.parent; a = a.parent) { // the "total" root is left out
      let d = cur.children.find((x) => x.name === a.name);
      if (!d) {
        d = node(a.name, 0, 0);
        d.parent = cur;
        d.depth = cur.depth + 1;
        cur.children.push(d);
      }
      d.total += c.total;
      cur = d;
    }
  }
  walk(callers, (n) => { n.self = n.total - n.children.reduce((s, c) => s + c.total, 0); });
  return { callers, callees, calls: calls.length };
}
