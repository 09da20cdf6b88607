"""The report page itself: static HTML, CSS and plain JavaScript around the run's data (no libraries,
no network). ``report.py`` fills in the data; the script draws the RD chart, the knob sliders, the
split / side-by-side / bit-map views with a zoom, and the sortable per-image table."""

from __future__ import annotations

CSS = """
:root { --fg:#1d232b; --muted:#5b6673; --line:#d8dde3; --accent:#1f6feb; --bg:#fff; --panel:#f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 6px; } .muted { color: var(--muted); }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: var(--panel); } .table-wrap th { position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; } table.sortable th[data-dir="asc"]::after { content: " ▲"; }
table.sortable th[data-dir="desc"]::after { content: " ▼"; }
.table-wrap { max-height: 420px; overflow: auto; border: 1px solid var(--line); }
.rd { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.rd svg { background: #fff; border: 1px solid var(--line); }
.legend { font-size: 12px; max-width: 360px; } .legend span.sw { display: inline-block; width: 18px; height: 3px;
  vertical-align: middle; margin-right: 6px; }
.buttons button { border: 1px solid var(--line); background: var(--panel); padding: 3px 10px; cursor: pointer;
  border-radius: 4px; margin: 0 4px 4px 0; font: inherit; }
.buttons button.on { background: var(--accent); color: #fff; border-color: var(--accent); }
.image-card { border: 1px solid var(--line); border-radius: 6px; padding: 12px; margin: 14px 0; }
.controls { display: flex; flex-wrap: wrap; gap: 14px 28px; align-items: center; margin: 6px 0; }
.controls label { display: flex; gap: 8px; align-items: center; }
.controls input[type=range].knob-slider { width: 260px; }
.knob-value { font-weight: 600; min-width: 90px; display: inline-block; }
.metrics { display: flex; flex-wrap: wrap; gap: 4px 18px; background: var(--panel); padding: 6px 10px;
  border-radius: 4px; margin: 6px 0; font-variant-numeric: tabular-nums; }
.metrics b { font-weight: 600; }
.viewer { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.stage { position: relative; display: inline-block; line-height: 0; cursor: crosshair; max-width: 100%; }
.stage img { width: 100%; display: block; } .stage.enlarged img { image-rendering: pixelated; }
.stage .decoded, .stage .layer { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.stage .layer { image-rendering: pixelated; pointer-events: none; display: none; }
.stage .divider { position: absolute; top: 0; bottom: 0; width: 2px; background: #fff; box-shadow: 0 0 2px #000;
  pointer-events: none; }
.stage .tag { position: absolute; top: 6px; background: rgba(0,0,0,.55); color: #fff; font-size: 11px;
  line-height: 1.3; padding: 1px 6px; border-radius: 3px; pointer-events: none; }
.stage .zoom-box { position: absolute; border: 2px solid #ffd33d; pointer-events: none; }
.stage.mode-side { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
.stage.mode-side .decoded { position: static; clip-path: none !important; }
.stage.mode-side .divider, .stage.mode-side .zoom-box, .stage.mode-bits .divider, .stage.mode-bits .original, .stage.mode-bits .tag-original { display: none; }
.stage.mode-bits .decoded { position: static; clip-path: none !important; }
.stage.mode-bits .layer.shown { display: block; }
.stage.mode-side .tag-decoded { left: calc(50% + 9px) !important; }
.zoom { display: flex; gap: 8px; }
.zoom figure { margin: 0; } .zoom figcaption { font-size: 12px; color: var(--muted); }
.zoom .panel { width: 200px; height: 200px; border: 1px solid var(--line); background-repeat: no-repeat;
  image-rendering: pixelated; }
.colourbar { display: inline-block; width: 160px; height: 10px; vertical-align: middle; border: 1px solid var(--line); }
details { margin: 8px 0; } pre { background: var(--panel); padding: 8px; overflow: auto; max-height: 400px;
  font-size: 12px; line-height: 1.35; }
.bd td.reason { text-align: left; white-space: normal; color: var(--muted); font-size: 12px; max-width: 520px; }
"""

SCRIPT = r"""
const DATA = JSON.parse(document.getElementById('report-data').textContent);
const KNOB_NAMES = {alpha: 'α', beta: 'β', steps: 'T', prompt: 'prompt set', fine: 'fine', medium: 'medium', coarse: 'coarse'};
const AXIS = DATA.axes;
const SHOWN = [['bpp', 'bpp'], ['bpsp', 'bpsp'], ['psnr-rgb', 'PSNR dB'], ['ms-ssim-rgb', 'MS-SSIM'],
  ['lpips', 'LPIPS'], ['lpips-vgg', 'LPIPS-VGG'], ['dists', 'DISTS'], ['bpp_est', 'bpp (estimate)'],
  ['gain_bpsp', 'gain bpsp'], ['encoding_time', 'enc s'], ['decoding_time', 'dec s']];
const highlights = {};

function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid != null) node.append(kid);
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
function fmt(v, digits = 4) {
  if (v === null || v === undefined || v === '') return '–';
  if (typeof v !== 'number') return String(v);
  if (!isFinite(v)) return '–';
  return Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(digits)));
}
function knobName(k) { return KNOB_NAMES[k] || k; }
function knobText(knobs) {
  const parts = Object.entries(knobs || {}).map(([k, v]) => `${knobName(k)} = ${fmt(v)}`);
  return parts.length ? parts.join(', ') : 'fixed rate';
}
function niceTicks(lo, hi, n = 6) {
  const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) ticks.push(Number(t.toPrecision(10)));
  return ticks;
}

// ---- RD chart ---------------------------------------------------------------------------------
function rdChart(set, axis, box, legend) {
  box.innerHTML = ''; legend.innerHTML = '';
  const W = 620, H = 380, m = {l: 58, r: 14, t: 12, b: 44};
  const ours = set.curves.filter(c => c.quality[axis]);
  const maxX = Math.max(...ours.flatMap(c => c.bpp)) * 1.3 || 1;
  const refs = (set.references[axis] || []).map(r => ({...r, pts: r.bpp.map((b, i) => [b, r.quality[i]])
    .filter(p => p[0] <= maxX && p[1] !== null)})).filter(r => r.pts.length);
  const ys = ours.flatMap(c => c.quality[axis]).concat(refs.flatMap(r => r.pts.map(p => p[1]))).filter(v => v !== null);
  let lo = Math.min(...ys), hi = Math.max(...ys); const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 1;
  lo -= pad; hi += pad;
  const x = v => m.l + (v / maxX) * (W - m.l - m.r), y = v => H - m.b - ((v - lo) / (hi - lo)) * (H - m.t - m.b);
  const s = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'rd-chart', 'data-axis': axis});
  for (const t of niceTicks(0, maxX)) {
    s.append(svg('line', {x1: x(t), x2: x(t), y1: m.t, y2: H - m.b, stroke: '#eee'}));
    const label = svg('text', {x: x(t), y: H - m.b + 16, 'text-anchor': 'middle', 'font-size': 11}); label.textContent = fmt(t, 3); s.append(label);
  }
  for (const t of niceTicks(lo, hi)) {
    s.append(svg('line', {x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), stroke: '#eee'}));
    const label = svg('text', {x: m.l - 6, y: y(t) + 4, 'text-anchor': 'end', 'font-size': 11}); label.textContent = fmt(t, 4); s.append(label);
  }
  s.append(svg('rect', {x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'none', stroke: '#999'}));
  const xl = svg('text', {x: (W + m.l) / 2, y: H - 8, 'text-anchor': 'middle', 'font-size': 12}); xl.textContent = 'bits per pixel (real bitstreams)'; s.append(xl);
  const [label, unit, higher] = AXIS[axis];
  const yl = svg('text', {x: 14, y: (H - m.b + m.t) / 2, transform: `rotate(-90 14 ${(H - m.b + m.t) / 2})`, 'text-anchor': 'middle', 'font-size': 12});
  yl.textContent = `${label}${unit ? ' (' + unit + ')' : ''}${higher ? '' : ' — lower is better'}`; s.append(yl);
  const line = (pts, colour, dash, width) => svg('polyline', {points: pts.map(p => `${x(p[0])},${y(p[1])}`).join(' '),
    fill: 'none', stroke: colour, 'stroke-width': width, 'stroke-dasharray': dash || ''});
  const grey = ['#8c8c8c', '#b07aa1', '#9c755f', '#76b7b2', '#bab0ac', '#edc948', '#ff9da7', '#59a14f', '#af7aa1', '#86bcb6', '#d37295', '#a0cbe8'];
  refs.forEach((r, i) => {
    const colour = grey[i % grey.length];
    s.append(line(r.pts, colour, r.kind === 'classical' ? '5 3' : '2 2', 1.3));
    legend.append(el('div', {}, el('span', {class: 'sw', style: `background:${colour}`}), r.name));
  });
  const colours = ['#1f6feb', '#d1242f', '#1a7f37', '#8250df', '#bf8700'];
  ours.forEach((c, ci) => {
    const colour = colours[ci % colours.length];
    const pts = c.bpp.map((b, i) => [b, c.quality[axis][i]]).filter(p => p[1] !== null);
    s.append(line([...pts].sort((a, b) => a[0] - b[0]), colour, '', 2.2));
    c.points.forEach((p, i) => {
      if (c.quality[axis][i] === null) return;
      const dot = svg('circle', {cx: x(c.bpp[i]), cy: y(c.quality[axis][i]), r: 3.5, fill: colour, 'data-point': p});
      const tip = svg('title', {}); tip.textContent = `${knobText(set.points[p])}: ${fmt(c.bpp[i])} bpp, ${fmt(c.quality[axis][i])}`;
      dot.append(tip); s.append(dot);
    });
    legend.prepend(el('div', {}, el('span', {class: 'sw', style: `background:${colour};height:4px`}), el('b', {text: c.name})));
  });
  const ring = svg('circle', {r: 8, fill: 'none', stroke: '#ffd33d', 'stroke-width': 3, class: 'current-point', visibility: 'hidden'});
  s.append(ring); box.append(s);
  const show = p => {
    const c = ours.find(c => c.points.includes(p)); if (!c) { ring.setAttribute('visibility', 'hidden'); return; }
    const i = c.points.indexOf(p); if (c.quality[axis][i] === null) return;
    ring.setAttribute('cx', x(c.bpp[i])); ring.setAttribute('cy', y(c.quality[axis][i])); ring.setAttribute('visibility', 'visible');
  };
  highlights[set.name] = show;
}

function losslessChart(set, box) {
  const r = set.results, knob = set.knobs[0];
  const rows = [['setting', 'bpsp'], ...r.bpsp.map((v, i) => [knobText(set.points[i]), fmt(v)])];
  for (const [name, v] of Object.entries(set.meta.classical || {})) rows.push([name + ' (lossless)', fmt(v)]);
  box.append(table(rows[0], rows.slice(1), false));
  highlights[set.name] = () => {};
}

function table(columns, rows, sortable = true) {
  const head = el('tr', {}, ...columns.map(c => el('th', {text: c})));
  const body = el('tbody', {}, ...rows.map(r => el('tr', {}, ...r.map(v => el('td', {text: typeof v === 'number' ? fmt(v, 5) : v})))));
  const t = el('table', {class: sortable ? 'sortable' : ''}, el('thead', {}, head), body);
  if (sortable) head.querySelectorAll('th').forEach((th, ci) => th.addEventListener('click', () => {
    const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
    head.querySelectorAll('th').forEach(o => delete o.dataset.dir); th.dataset.dir = dir;
    const sorted = [...rows].sort((a, b) => {
      const u = a[ci], v = b[ci];
      const c = (typeof u === 'number' && typeof v === 'number') ? u - v : String(u).localeCompare(String(v), undefined, {numeric: true});
      return dir === 'asc' ? c : -c;
    });
    body.replaceChildren(...sorted.map(r => el('tr', {}, ...r.map(v => el('td', {text: typeof v === 'number' ? fmt(v, 5) : v})))));
  }));
  return t;
}

function bdTable(set) {
  const out = el('div', {});
  const bd = set.meta.bd, legacy = set.meta.bd_rate;
  if (legacy) out.append(el('p', {}, el('b', {text: 'BD-rate '}), `(${legacy.metric}, vs ${legacy.reference || '–'}): `,
    el('b', {text: legacy.value === null ? 'n/a' : fmt(legacy.value) + ' %'}), legacy.reason ? el('span', {class: 'muted', text: ` — ${legacy.reason}`}) : null));
  const rowsOf = metrics => Object.entries(metrics).map(([axis, e]) => el('tr', {},
    el('td', {text: e.label + (e.unit ? ` (${e.unit})` : '') + (e.reference ? ` vs ${e.reference}` : '')}), el('td', {text: e.bd_rate === null ? 'n/a' : fmt(e.bd_rate) + ' %'}),
    el('td', {text: e.bd_quality === null ? 'n/a' : fmt(e.bd_quality) + (e.unit ? ' ' + e.unit : '')}),
    el('td', {text: e.higher_is_better ? 'higher' : 'lower'}), el('td', {class: 'reason', text: e.reason || ''})));
  const head = () => el('thead', {}, el('tr', {}, ...['quality', 'BD-rate', 'BD-quality', 'better', 'why no number'].map(h => el('th', {text: h}))));
  if (bd) {
    out.append(el('h3', {text: `BD against ${bd.reference || '(none)'} (${bd.method}, curve ${bd.curve})`}));
    if (bd.reason) out.append(el('p', {class: 'muted', text: bd.reason}));
    if (Object.keys(bd.metrics).length) out.append(el('table', {class: 'bd'}, head(), el('tbody', {}, ...rowsOf(bd.metrics))));
  }
  const fam = set.meta.bd_family;
  if (fam) for (const [name, metrics] of Object.entries(fam.curves)) {
    out.append(el('h3', {text: `${name} against ${fam.reference_curve}`}));
    out.append(el('table', {class: 'bd'}, head(), el('tbody', {}, ...rowsOf(metrics))));
  }
  return out;
}

// ---- knob sliders ------------------------------------------------------------------------------
function sliderPlan(points) {
  const names = Object.keys(points[0] || {});
  const values = Object.fromEntries(names.map(k => [k, [...new Set(points.map(p => p[k]))].sort((a, b) => a - b)]));
  const varying = names.filter(k => values[k].length > 1);
  const grid = varying.reduce((n, k) => n * values[k].length, 1) === points.length;
  if (varying.length === 1 || (varying.length > 1 && grid)) return varying.map(k => ({knob: k, values: values[k]}));
  if (points.length > 1) return [{knob: 'point', values: points.map((_, i) => i)}];
  return [];
}

function findPoint(points, plan, state) {
  if (plan.length === 1 && plan[0].knob === 'point') return state.point;
  const exact = points.findIndex(p => plan.every(s => p[s.knob] === state[s.knob]));
  if (exact >= 0) return exact;
  return points.findIndex(p => p[plan[0].knob] === state[plan[0].knob]);
}

function imageCard(set, image) {
  const rowsByPoint = {};
  const cols = set.per_image.columns, ni = cols.indexOf('image'), pi = cols.indexOf('point');
  for (const r of set.per_image.rows) if (r[ni] === image.name) rowsByPoint[r[pi]] = Object.fromEntries(cols.map((c, i) => [c, r[i]]));
  const plan = sliderPlan(set.points);
  const state = Object.fromEntries(plan.map(s => [s.knob, s.values[s.values.length - 1]]));
  const card = el('section', {class: 'image-card', 'data-image': image.name});
  card.append(el('h3', {text: `${image.name}  (${image.width}×${image.height})`}));
  const controls = el('div', {class: 'controls'});
  const knobValue = el('span', {class: 'knob-value'});
  plan.forEach(s => {
    const input = el('input', {type: 'range', class: 'knob-slider', 'data-knob': s.knob, min: 0, max: s.values.length - 1,
      step: 1, value: s.values.length - 1, 'aria-label': knobName(s.knob)});
    const shown = el('span', {class: 'muted'});
    const update = () => { state[s.knob] = s.values[+input.value]; shown.textContent = s.knob === 'point' ? '' : `${knobName(s.knob)} ${fmt(state[s.knob])}`; render(); };
    input.addEventListener('input', update);
    controls.append(el('label', {}, el('span', {text: s.knob === 'point' ? 'knob setting' : knobName(s.knob)}), input, shown));
    s.input = input; s.update = update;
  });
  controls.append(knobValue);
  if (!plan.length) controls.append(el('span', {class: 'muted', text: 'one knob setting (fixed-rate codec)'}));
  card.append(controls);
  const metrics = el('div', {class: 'metrics'});
  card.append(metrics);

  const modes = el('div', {class: 'buttons'});
  const stage = el('div', {class: 'stage mode-split'});
  const original = el('img', {class: 'original', alt: 'original', src: image.original.thumb});
  const decoded = el('img', {class: 'decoded', alt: 'decoded'});
  const bits = el('img', {class: 'layer bits-layer shown', alt: ''});
  const grain = el('img', {class: 'layer grain-layer', alt: ''});
  const patches = el('img', {class: 'layer patch-layer', alt: ''});
  const divider = el('div', {class: 'divider'}), box = el('div', {class: 'zoom-box'});
  const tagO = el('span', {class: 'tag tag-original', style: 'left:6px', text: 'original'});
  const tagD = el('span', {class: 'tag tag-decoded', style: 'right:6px', text: 'decoded'});
  stage.append(original, decoded, bits, grain, patches, divider, tagO, tagD, box);
  // small crops are shown enlarged (pixels kept sharp), large images at their thumbnail size
  const shownWidth = Math.min(640, Math.max(384, image.width * Math.min(1, DATA.thumb_size / Math.max(image.width, image.height))));
  stage.style.width = `${shownWidth}px`;
  if (shownWidth > image.width) stage.classList.add('enlarged');
  let split = 50, mode = 'split';
  const setSplit = v => { split = Math.max(0, Math.min(100, v)); decoded.style.clipPath = `inset(0 0 0 ${split}%)`; divider.style.left = `${split}%`; };
  setSplit(50);
  stage.addEventListener('mousemove', e => { if (mode === 'split' && e.buttons === 0 && e.shiftKey) { const r = stage.getBoundingClientRect(); setSplit((e.clientX - r.left) / r.width * 100); } });
  const splitInput = el('input', {type: 'range', min: 0, max: 100, value: 50, class: 'split-slider', 'aria-label': 'split'});
  splitInput.addEventListener('input', () => setSplit(+splitInput.value));
  const opacity = el('input', {type: 'range', min: 0, max: 100, value: 75, class: 'opacity-slider', 'aria-label': 'bit map opacity'});
  opacity.addEventListener('input', () => { for (const l of [bits, grain, patches]) l.style.opacity = opacity.value / 100; });
  bits.style.opacity = grain.style.opacity = patches.style.opacity = 0.75;
  const grainBox = el('input', {type: 'checkbox'}), patchBox = el('input', {type: 'checkbox'});
  grainBox.addEventListener('change', () => grain.classList.toggle('shown', grainBox.checked));
  patchBox.addEventListener('change', () => { patches.classList.toggle('shown', patchBox.checked); bits.classList.toggle('shown', !patchBox.checked); });
  const hasMaps = image.points.some(p => p.bit_map), hasGrain = image.points.some(p => p.overlay), hasPatches = image.points.some(p => p.patch_map);
  const modeButtons = {};
  for (const [key, text] of [['split', 'split'], ['side', 'side by side'], ['bits', 'bit allocation']]) {
    if (key === 'bits' && !hasMaps) continue;
    const b = el('button', {type: 'button', text, class: key === 'split' ? 'on' : '', 'data-mode': key});
    b.addEventListener('click', () => { mode = key; stage.classList.remove('mode-split', 'mode-side', 'mode-bits'); stage.classList.add(`mode-${key}`); stage.style.width = `${key === 'side' ? 2 * shownWidth + 6 : shownWidth}px`; Object.values(modeButtons).forEach(o => o.classList.remove('on')); b.classList.add('on'); });
    modeButtons[key] = b; modes.append(b);
  }
  modes.append(el('label', {}, ' split ', splitInput));
  if (hasMaps) {
    const scale = image.bit_scale;
    const bar = el('span', {class: 'colourbar', style: `background:linear-gradient(to right, ${scale.colours.join(',')})`});
    modes.append(el('label', {}, ' map opacity ', opacity), el('span', {class: 'muted'}, '  0 ', bar, ` ${fmt(scale.max_bpp, 3)} bits/pixel`));
  }
  if (hasGrain) modes.append(el('label', {}, grainBox, ' granularity (coarse: blue, medium: pink)'));
  if (hasPatches) modes.append(el('label', {}, patchBox, ` bits/sub-pixel per patch (0–${fmt(image.patch_scale, 3)})`));
  card.append(modes);

  const zoomFactor = el('select', {'aria-label': 'zoom'}, ...[2, 4, 8].map(z => el('option', {value: z, text: `${z}×`})));
  zoomFactor.value = 4;
  const zo = el('div', {class: 'panel zoom-original'}), zd = el('div', {class: 'panel zoom-decoded'});
  const fullLink = el('a', {class: 'full-link', target: '_blank', text: 'decoded image at full size ↗'});
  const zoom = el('div', {class: 'zoom'}, el('figure', {}, zo, el('figcaption', {text: 'original (zoom)'})),
    el('figure', {}, zd, el('figcaption', {}, 'decoded (zoom) ', zoomFactor)));
  const side = el('div', {}, zoom, el('p', {class: 'muted', text: 'click the picture to move the zoom'}), fullLink);
  card.append(el('div', {class: 'viewer'}, stage, side));
  let fx = 0.5, fy = 0.5;
  const P = 200;
  const place = (panel, src) => {
    const z = +zoomFactor.value, w = image.width * z, h = image.height * z;
    panel.style.backgroundImage = `url("${src}")`; panel.style.backgroundSize = `${w}px ${h}px`;
    panel.style.backgroundPosition = `${-(fx * w - P / 2)}px ${-(fy * h - P / 2)}px`;
    const bw = P / w * 100, bh = P / h * 100;
    Object.assign(box.style, {left: `${fx * 100 - bw / 2}%`, top: `${fy * 100 - bh / 2}%`, width: `${bw}%`, height: `${bh}%`});
  };
  let current = null;
  const drawZoom = () => { if (!current) return; place(zo, image.original.full || image.original.thumb); place(zd, current.full || current.thumb); };
  stage.addEventListener('click', e => { const r = (mode === 'side' ? decoded : stage).getBoundingClientRect();
    fx = Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)); fy = Math.max(0, Math.min(1, (e.clientY - r.top) / r.height)); drawZoom(); });
  zoomFactor.addEventListener('change', drawZoom);

  function render() {
    const index = plan.length ? findPoint(set.points, plan, state) : 0;
    const p = image.points[index]; if (!p) return;
    current = p;
    decoded.src = p.thumb; card.dataset.point = index;
    if (p.bit_map) bits.src = p.bit_map;
    if (p.overlay) grain.src = p.overlay;
    if (p.patch_map) patches.src = p.patch_map;
    if (p.full) { fullLink.href = p.full; fullLink.style.display = ''; } else fullLink.style.display = 'none';
    knobValue.textContent = knobText(set.points[index]);
    const row = rowsByPoint[index] || {};
    metrics.replaceChildren();
    for (const [key, label] of SHOWN) {
      if (!(key in row)) continue;
      const cls = key === 'bpp' ? 'metric-bpp' : `metric-${key}`;
      metrics.append(el('span', {}, `${label}: `, el('b', {class: cls, text: fmt(row[key])})));
    }
    if (p.map_bits !== undefined) {
      const image_bits = p.payload_bits - p.side_bits;
      metrics.append(el('span', {}, 'bit map: ', el('b', {class: 'metric-map', text: `${fmt(p.map_bits, 6)} bits`}),
        ` = ${fmt(100 * p.map_bits / image_bits, 4)} % of the ${image_bits} image-payload bits`,
        p.side_bits ? `; side information ${p.side_bits} bits` : ''));
      metrics.append(el('span', {class: 'muted', text: Object.entries(p.streams).map(([k, v]) => `${k}: ${fmt(v, 5)}`).join(', ')}));
    } else if (p.no_bit_map) metrics.append(el('span', {class: 'muted', text: `no bit map: ${p.no_bit_map}`}));
    if (p.grains) metrics.append(el('span', {class: 'muted', text: `grain cells: coarse ${p.grains.coarse}, medium ${p.grains.medium}, fine ${p.grains.fine}`}));
    if (p.same_as_sweep === false) metrics.append(el('span', {class: 'muted', text: 'note: re-coding gave another bitstream than the sweep'}));
    drawZoom();
    (highlights[set.name] || (() => {}))(index);
  }
  render();
  return card;
}

// ---- page -------------------------------------------------------------------------------------
function main() {
  const root = document.getElementById('report');
  for (const set of DATA.sets) {
    const section = el('section', {class: 'set'});
    section.append(el('h2', {text: `${set.label} on ${set.name}`}));
    const r = set.results, n = (r.bpp || r.bpsp || []).length;
    section.append(el('p', {class: 'muted', text: `${n} knob setting${n === 1 ? '' : 's'} · ${set.meta.num_images ?? '?'} images · knobs: ${set.knobs.map(knobName).join(', ') || 'none'} · codec ${set.meta.codec || ''}`}));
    const chartBox = el('div', {}), legend = el('div', {class: 'legend'});
    if (set.curves.length && 'bpp' in r) {
      const buttons = el('div', {class: 'buttons'});
      set.axes.forEach((axis, i) => {
        const b = el('button', {type: 'button', text: AXIS[axis][0] + (AXIS[axis][1] ? ` (${AXIS[axis][1]})` : ''), class: i === 0 ? 'on' : '', 'data-axis': axis});
        b.addEventListener('click', () => { buttons.querySelectorAll('button').forEach(o => o.classList.remove('on')); b.classList.add('on');
          rdChart(set, axis, chartBox, legend); const card = section.querySelector('.image-card'); if (card) highlights[set.name](+card.dataset.point); });
        buttons.append(b);
      });
      section.append(buttons, el('div', {class: 'rd'}, chartBox, legend));
      rdChart(set, set.axes[0], chartBox, legend);
    } else losslessChart(set, chartBox), section.append(chartBox);
    if (set.plot) section.append(el('details', {}, el('summary', {text: 'the RD plot as written by the sweep (PNG)'}), el('img', {src: set.plot, alt: 'RD plot', style: 'max-width:100%'})));
    section.append(bdTable(set));
    if (set.images.length) {
      section.append(el('h2', {text: 'The knob at work'}));
      section.append(el('p', {class: 'muted', text: 'Drag the slider: the decoded picture, its real bitrate and its quality follow. Split view: drag the split slider; bit allocation: −log₂ of the coder\'s own probabilities, summed over channels, on one colour scale per image.'}));
      for (const image of set.images) section.append(imageCard(set, image));
    } else section.append(el('p', {class: 'muted', text: 'No pictures were saved for this set (report.images = 0 or an older run).'}));
    if (set.per_image.rows.length) {
      section.append(el('h2', {text: `Per image (${set.per_image.rows.length} rows; click a column to sort)`}));
      section.append(el('div', {class: 'table-wrap'}, table(set.per_image.columns, set.per_image.rows)));
    }
    root.append(section);
  }
  const prov = DATA.provenance, block = el('details', {class: 'provenance'}, el('summary', {text: 'Provenance: config, commit, fingerprint'}));
  block.append(el('p', {}, 'weights fingerprint: ', el('code', {text: prov.weights_fingerprint || '–'})));
  for (const [name, label] of [['git_commit.txt', 'git commit and status'], ['config.yaml', 'resolved config'], ['git_diff.patch', 'uncommitted changes']])
    if (prov[name] !== undefined) block.append(el('details', {}, el('summary', {text: label}), el('pre', {text: prov[name] || '(empty)'})));
  root.append(el('h2', {text: 'Provenance'}), block);
}
main();
"""


def page(title: str, data_json: str) -> str:
    """The whole page: ``title`` already HTML-escaped, ``data_json`` safe inside a script element."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>{title}</title><style>{CSS}</style></head>
<body><h1>{title}</h1><p class="muted">ctrlic run report: RD curves, BD-rates, the knob at work on chosen images,
per-image figures, provenance. Self-contained: this file and its report_assets/ folder.</p>
<div id="report"></div>
<script type="application/json" id="report-data">{data_json}</script>
<script>{SCRIPT}</script>
</body></html>
"""
