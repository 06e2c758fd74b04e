// flamegraph.js — a call tree drawn on one canvas as an icicle (root on top;
// `inverted` puts it at the bottom, for the callers of a sandwich). Only the
// frames wider than half a pixel are drawn, so large trees stay smooth; every
// drawn frame is hoverable. Narrower frames side by side are drawn as one
// plain block (not hoverable), so the place where many tiny frames add up is
// not left blank. Click zooms into a frame (its ancestors stay,
// dimmed, full width), click an ancestor to zoom out; back() steps back.
import * as fmt from './format.js';

const ROW = 22;
const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';
const MIN_LABEL_PX = 20;
const MAX_REPORTED = 5000; // frames listed by drawn() for tests

export class FlameGraph {
  // opts: {inverted, onClick(node), tooltip: element}
  constructor(container, opts = {}) {
    this.el = container;
    this.opts = opts;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'flamegraph';
    container.replaceChildren(this.canvas);
    this.root = null;
    this.focus = null;
    this.history = [];
    this.match = null;
    this.frames = [];
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => this.hideTip());
    this.canvas.addEventListener('click', (e) => this.click(e));
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(container);
  }

  // info: {unit, coresPer (value -> cores, or null), diff: {leftTicks, rightTicks}, maxNodes}
  setTree(root, info = {}) {
    this.root = root;
    this.info = info;
    this.focus = root;
    this.history = [];
    this.layout();
    this.draw();
  }

  layout() {
    this.levels = [];
    const place = (n, x, depth) => {
      n._lx = x;
      n.depth = depth;
      (this.levels[depth] ||= []).push(n);
      let cx = x;
      for (const c of n.children) {
        place(c, cx, depth + 1);
        cx += c.total;
      }
    };
    if (this.root) place(this.root, 0, 0);
  }

  setHighlight(match) {
    this.match = match;
    this.draw();
  }

  zoom(n) {
    if (!n || n === this.focus) return;
    this.history.push(this.focus);
    this.focus = n;
    this.draw();
    this.opts.onZoom?.(n);
  }

  back() {
    if (!this.history.length) return false;
    this.focus = this.history.pop();
    this.draw();
    this.opts.onZoom?.(this.focus);
    return true;
  }

  reset() {
    if (this.focus === this.root) return;
    this.history = [];
    this.focus = this.root;
    this.draw();
    this.opts.onZoom?.(this.root);
  }

  colors() {
    const cs = getComputedStyle(document.documentElement);
    const v = (k) => cs.getPropertyValue(k).trim();
    return { text: v('--frame-text'), muted: v('--frame-muted'), other: v('--frame-other'),
      bg: v('--bg'), hit: v('--frame-match'), border: v('--bg') };
  }

  frameColor(n, c) {
    if (this.match && !this.match(n.name) && n !== this.root) return c.muted;
    if (this.info.diff) return fmt.diffColor(this.change(n).relative);
    if (n.name === 'other') return c.other;
    if (n === this.root && n.name === 'total') return 'hsl(0,0%,72%)';
    return fmt.packageColor(n.name);
  }

  // Shares of a diff frame on each side and how they moved.
  change(n) {
    const { leftTicks, rightTicks } = this.info.diff;
    const lp = leftTicks ? (100 * n.lt) / leftTicks : 0;
    const rp = rightTicks ? (100 * n.rt) / rightTicks : 0;
    const r2 = (x) => Math.round(x * 100) / 100;
    let relative = 0;
    if (r2(lp) !== r2(rp)) relative = r2(lp) === 0 ? 100 : Math.max(-100, Math.min(100, (100 * (rp - lp)) / lp));
    return { lp, rp, pp: rp - lp, relative };
  }

  draw() {
    const cv = this.canvas;
    if (!this.root) return;
    const t0 = performance.now();
    this.hideTip(); // what it pointed at may have moved
    const dpr = window.devicePixelRatio || 1;
    const W = Math.max(100, this.el.clientWidth);
    const depth = this.levels.length;
    const H = Math.max(ROW, depth * ROW);
    cv.style.width = W + 'px';
    cv.style.height = H + 'px';
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    const ctx = cv.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    const charW = ctx.measureText('m').width || 7;
    const c = this.colors();
    const f = this.focus;
    const scale = f.total > 0 ? W / f.total : 0;
    const ancestors = new Set();
    for (let a = f.parent; a; a = a.parent) ancestors.add(a);
    this.frames = [];
    this.narrow = [];
    this.pattern ||= hatch(ctx, c.other);
    for (let d = 0; d < depth; d++) {
      const y = this.opts.inverted ? H - (d + 1) * ROW : d * ROW;
      let run = null; // [x0, x1): frames too narrow to draw, side by side
      const flush = () => {
        if (run && run[1] - run[0] >= 0.5) {
          ctx.fillStyle = c.muted;
          ctx.fillRect(run[0], y, run[1] - run[0], ROW - 1);
          this.narrow.push({ depth: d, x: run[0], w: run[1] - run[0] });
        }
        run = null;
      };
      for (const n of this.levels[d]) {
        let x, w;
        if (d <= f.depth) {
          if (n !== f && !ancestors.has(n)) continue;
          x = 0; w = W;
        } else {
          if (n._lx + n.total <= f._lx || n._lx >= f._lx + f.total) continue;
          x = (n._lx - f._lx) * scale;
          w = n.total * scale;
        }
        if (w < 0.5) {
          if (run && x - run[1] < 0.5) run[1] = x + w;
          else { flush(); run = [x, x + w]; }
          continue;
        }
        flush();
        this.drawFrame(ctx, n, x, y, w, c, charW, ancestors.has(n));
        this.frames.push({ n, x, y, w });
      }
      flush();
    }
    this.drawMs = performance.now() - t0;
  }

  // Nodes of the tree (drawn or not).
  size() {
    return this.levels ? this.levels.reduce((a, l) => a + l.length, 0) : 0;
  }

  drawFrame(ctx, n, x, y, w, c, charW, dimmed) {
    const bw = w > 2 ? w - 0.5 : w;
    ctx.globalAlpha = dimmed ? 0.45 : 1;
    ctx.fillStyle = this.frameColor(n, c);
    ctx.fillRect(x, y, bw, ROW - 1);
    if (n.name === 'other' && !this.info.diff) {
      ctx.fillStyle = this.pattern;
      ctx.fillRect(x, y, bw, ROW - 1);
    }
    if (this.match && n !== this.root && this.match(n.name)) {
      ctx.strokeStyle = c.hit;
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 1, y + 1, Math.max(0, bw - 2), ROW - 3);
    }
    if (w >= MIN_LABEL_PX) {
      const chars = Math.floor((w - 8) / charW);
      let label = n === this.root && n.name === 'total' ? this.rootLabel() : fmt.fit(n.name, chars);
      if (label.length > chars) label = fmt.fit(label, chars);
      if (label) {
        // strong diff colours are dark: white text stays readable on them
        const strong = this.info.diff && n !== this.root && Math.abs(this.change(n).relative) > 50;
        ctx.fillStyle = strong ? '#fff' : c.text;
        ctx.fillText(label, x + 4, y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
  }

  rootLabel() {
    const i = this.info;
    if (i.diff) return `total: ${fmt.value(i.diff.leftTicks, i.unit)} → ${fmt.value(i.diff.rightTicks, i.unit)}`;
    let s = `total: ${fmt.value(this.root.total, i.unit)}`;
    if (i.coresPer) s += ` (${fmt.cores(i.coresPer(this.root.total))})`;
    return s;
  }

  hit(e) {
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left, y = e.clientY - r.top;
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const fr = this.frames[i];
      if (y >= fr.y && y < fr.y + ROW && x >= fr.x && x < fr.x + fr.w) return fr.n;
    }
    return null;
  }

  hover(e) {
    const n = this.hit(e);
    const tip = this.opts.tooltip;
    if (!n || !tip) return this.hideTip();
    tip.replaceChildren(...this.tipLines(n).map(([cls, text]) => {
      const div = document.createElement('div');
      div.className = cls;
      div.textContent = text;
      return div;
    }));
    tip.hidden = false;
    const pad = 15;
    const tw = tip.offsetWidth, th = tip.offsetHeight;
    let left = e.clientX + pad, top = e.clientY + pad;
    if (left + tw > window.innerWidth) left = Math.max(0, e.clientX - tw - pad);
    if (top + th > window.innerHeight) top = Math.max(0, e.clientY - th - pad);
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
    this.canvas.style.cursor = 'pointer';
  }

  hideTip() {
    if (this.opts.tooltip) this.opts.tooltip.hidden = true;
    this.canvas.style.cursor = '';
  }

  // [class, text] lines of the tooltip of n.
  tipLines(n) {
    const i = this.info, u = i.unit;
    const lines = [['tip-name', n.name]];
    if (i.diff) {
      const ch = this.change(n);
      lines.push(['', `Baseline: ${fmt.value(n.lt, u)} (${ch.lp.toFixed(2)}%), self ${fmt.value(n.ls, u)}`]);
      lines.push(['', `Comparison: ${fmt.value(n.rt, u)} (${ch.rp.toFixed(2)}%), self ${fmt.value(n.rs, u)}`]);
      const what = n.lt === 0 && n.rt > 0 ? ' (new)' : n.rt === 0 && n.lt > 0 ? ' (removed)' : '';
      const sign = ch.pp > 0 ? '+' : '';
      lines.push([ch.pp > 0 ? 'tip-up' : ch.pp < 0 ? 'tip-down' : '', `Change: ${sign}${ch.pp.toFixed(2)} pp of the total${what}`]);
      return lines;
    }
    const tot = this.root.total;
    const cores = (v) => (i.coresPer ? `, ${fmt.cores(i.coresPer(v))}` : '');
    lines.push(['', `Total: ${fmt.value(n.total, u)} (${fmt.percent(n.total, tot)}${cores(n.total)})`]);
    lines.push(['', `Self: ${fmt.value(n.self, u)} (${fmt.percent(n.self, tot)}${cores(n.self)})`]);
    if (n.name === 'other') {
      lines.push(['tip-note', `frames folded into one: the graph keeps the ${i.maxNodes || 'largest'} nodes (maxNodes); totals are exact`]);
    }
    return lines;
  }

  click(e) {
    const n = this.hit(e);
    if (!n) return;
    if (n === this.root) this.reset();
    else this.zoom(n);
    this.opts.onClick?.(n);
  }

  // The blocks of frames too narrow to draw one by one, for tests.
  narrowDrawn() {
    return (this.narrow || []).map(({ depth, x, w }) => ({ depth, x: Math.round(x), width: w }));
  }

  // What was drawn, for tests and the page's state: one entry per frame.
  drawn() {
    const tot = this.root ? this.root.total : 0;
    return this.frames.slice(0, MAX_REPORTED).map(({ n, x, w }) => ({
      name: n.name, total: n.total, self: n.self, depth: n.depth, x: Math.round(x), width: Math.round(w),
      percent: tot ? Math.round((10000 * n.total) / tot) / 100 : 0,
      highlighted: !!(this.match && this.match(n.name)),
    }));
  }
}

function hatch(ctx, color) {
  const p = document.createElement('canvas');
  p.width = p.height = 8;
  const g = p.getContext('2d');
  g.strokeStyle = 'rgba(0,0,0,0.25)';
  g.beginPath();
  g.moveTo(0, 8); g.lineTo(8, 0);
  g.stroke();
  return ctx.createPattern(p, 'repeat');
}
