// timeline.js — totals over the range as bars (in cores for CPU types);
// dragging across it picks a narrower range (onSelect(fromSec, untilSec)).
import * as fmt from './format.js';

const H = 80;
const AXIS = 16;

export class Timeline {
  constructor(container, opts = {}) {
    this.el = container;
    this.opts = opts;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'timeline';
    this.caption = document.createElement('div');
    this.caption.className = 'timeline-caption';
    container.replaceChildren(this.caption, this.canvas);
    this.series = [];
    this.drag = null;
    this.canvas.addEventListener('mousedown', (e) => this.down(e));
    window.addEventListener('mousemove', (e) => this.move(e));
    window.addEventListener('mouseup', (e) => this.up(e));
    new ResizeObserver(() => this.draw()).observe(container);
  }

  // series: [{timeline: {startTime, samples, durationDelta}, color}]; unit, cpu;
  // gauge: the render's metadata.aggregationType is "average" (in-use memory):
  // each bucket is already the average profile of the bucket, drawn as is
  set(series, unit, cpu, gauge) {
    this.series = series.filter((s) => s.timeline && s.timeline.samples);
    this.unit = unit;
    this.cpu = cpu;
    this.gauge = !!gauge;
    this.draw();
  }

  // value per bucket in what the caption says (cores, unit per second, or
  // for a gauge the unit itself: a snapshot is not a rate)
  perSecond(v, dt) {
    if (this.gauge) return v;
    return this.cpu ? v / 1e9 / dt : v / dt;
  }

  bounds() {
    let t0 = Infinity, t1 = -Infinity, max = 0;
    for (const s of this.series) {
      const tl = s.timeline;
      t0 = Math.min(t0, tl.startTime);
      t1 = Math.max(t1, tl.startTime + tl.samples.length * tl.durationDelta);
      for (const v of tl.samples) max = Math.max(max, this.perSecond(v, tl.durationDelta));
    }
    return { t0, t1, max: niceMax(max, this.cpu ? '' : this.unit) };
  }

  draw() {
    const W = Math.max(100, this.el.clientWidth);
    const dpr = window.devicePixelRatio || 1;
    const cv = this.canvas;
    cv.style.width = W + 'px';
    cv.style.height = H + 'px';
    cv.width = W * dpr;
    cv.height = H * dpr;
    const ctx = cv.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const cs = getComputedStyle(document.documentElement);
    const fg = cs.getPropertyValue('--muted-text').trim();
    // all-zero buckets are no data too: not an empty plot captioned "max 0 cores"
    if (!this.series.some((s) => s.timeline.samples.some((v) => v))) {
      this.b = null;
      this.caption.textContent = 'no data in this range';
      return;
    }
    const b = (this.b = this.bounds());
    const plotH = H - AXIS;
    const sx = (t) => ((t - b.t0) / (b.t1 - b.t0 || 1)) * W;
    // several series share each bucket side by side, so none hides another
    const ns = this.series.length;
    this.series.forEach((s, k) => {
      const tl = s.timeline;
      ctx.fillStyle = s.color || cs.getPropertyValue('--accent').trim();
      ctx.globalAlpha = 0.85;
      tl.samples.forEach((v, i) => {
        if (!v) return;
        const t = tl.startTime + i * tl.durationDelta;
        const x0 = sx(t), full = sx(t + tl.durationDelta) - x0;
        const w = Math.max(1, full / ns - 0.5);
        const h = b.max ? (this.perSecond(v, tl.durationDelta) / b.max) * plotH : 0;
        ctx.fillRect(x0 + (k * full) / ns, plotH - h, w, h);
      });
    });
    ctx.globalAlpha = 1;
    ctx.fillStyle = fg;
    ctx.font = '11px sans-serif';
    ctx.textBaseline = 'top';
    ctx.fillText(fmt.time(b.t0), 2, plotH + 3);
    const end = fmt.time(b.t1);
    ctx.fillText(end, W - ctx.measureText(end).width - 2, plotH + 3);
    let what = this.cpu ? 'cores' : `${this.unit || 'value'} / s`;
    let top = this.cpu ? fmt.cores(b.max) : `${fmt.value(b.max, this.unit)} / s`;
    if (this.gauge) {
      what = `${this.unit || 'value'} in use (average of each bucket's profiles)`;
      top = fmt.value(b.max, this.unit);
    }
    this.caption.textContent = `${what} over time (max ${top}); drag to zoom into a range`;
    if (this.drag && this.drag.x1 !== undefined) {
      ctx.fillStyle = 'rgba(80,140,255,0.25)';
      const x = Math.min(this.drag.x0, this.drag.x1);
      ctx.fillRect(x, 0, Math.abs(this.drag.x1 - this.drag.x0), plotH);
    }
  }

  xOf(e) {
    const r = this.canvas.getBoundingClientRect();
    return Math.max(0, Math.min(r.width, e.clientX - r.left));
  }

  down(e) {
    if (!this.b) return;
    this.drag = { x0: this.xOf(e) };
    e.preventDefault();
  }

  move(e) {
    if (!this.drag) return;
    this.drag.x1 = this.xOf(e);
    this.draw();
  }

  up(e) {
    if (!this.drag) return;
    const d = this.drag;
    this.drag = null;
    this.draw();
    const W = this.canvas.getBoundingClientRect().width;
    if (d.x1 === undefined || Math.abs(d.x1 - d.x0) < W * 0.005) return; // a click, not a drag
    const t = (x) => Math.round(this.b.t0 + (x / W) * (this.b.t1 - this.b.t0));
    this.opts.onSelect?.(t(Math.min(d.x0, d.x1)), t(Math.max(d.x0, d.x1)));
  }

  // Selects [from, until) as a drag would (tests and keyboard users).
  select(fromSec, untilSec) {
    this.opts.onSelect?.(fromSec, untilSec);
  }
}

// 1-2-5 rounding up, so the axis reads well. Bytes are shown in 1024-based
// units (format.js), so their steps are 1-2-5 of KiB, MiB, GiB: a decimal
// step would read "953.67 MiB" where "1 GiB" is meant.
export function niceMax(v, unit) {
  if (v <= 0) return 0;
  if (unit === 'bytes') {
    const p = Math.pow(1024, Math.max(0, Math.floor(Math.log(v) / Math.log(1024))));
    for (const m of [1, 2, 5, 10, 20, 50, 100, 200, 500]) if (m * p >= v) return m * p;
    return 1024 * p;
  }
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
