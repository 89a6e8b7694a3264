// Panels: an answer drawn as a time series (lines or stacked areas), a bar
// chart, a big number or a table, with empty and error states that say why.

import { h, mount, fmtNumber, fmtExact, fmtTime, ianaOrNull } from './util.js';
import { errorList, overTime } from './builder.js';

const COLORS = ['#2f6fde', '#e0731c', '#2a9d5b', '#c23b7a', '#7a5bd6', '#b5952c', '#1a9fb0', '#d94242', '#6b7a8f', '#8c5a2b'];

/** A measure's unit as a reader sees it: the function it computes. */
function unitOf(metric, name) {
  const m = metric && metric.measures.find((x) => x.name === name);
  return m ? m.text : '';
}

/** Labels of a row's group keys: "game_id=g1 · platform=ios". */
function groupLabel(row, keys) {
  return keys.map((k) => `${k}=${row[k]}`).join(' · ');
}

/**
 * Draws `answer` for `panel` into `el`. `metric` is the catalog's entry.
 * Sets data-state (ok, empty, error) and data-points (values drawn) on `el`,
 * which the browser tests read.
 */
export function drawAnswer(el, panel, answer, metric, zone) {
  disposeChart(el);
  const measures = answer.columns.filter((c) => c !== '__time' && !(panel.query.group_by || []).includes(c));
  const keys = answer.columns.filter((c) => c !== '__time' && !measures.includes(c));
  el.dataset.points = '0';
  if (!answer.rows.length) {
    el.dataset.state = 'empty';
    const newest = answer.as_of && answer.as_of.watermark;
    return mount(el, h('div', { class: 'empty' },
      h('strong', {}, 'No data for this query in this time range.'),
      h('p', {}, newest
        ? `The newest complete data is at ${newest}. Try a longer time range, or loosen the filters.`
        : 'No event has arrived yet: check the sources on the Status page.')));
  }
  el.dataset.state = 'ok';
  if (overTime(panel.type)) return timeSeries(el, panel, answer, metric, zone, measures, keys);
  if (panel.type === 'bar') return bars(el, answer, metric, measures, keys);
  if (panel.type === 'number') return bigNumber(el, answer, metric, measures);
  return table(el, answer, zone);
}

/** Shows an error in a panel. */
export function drawError(el, err) {
  disposeChart(el);
  el.dataset.state = 'error';
  el.dataset.points = '0';
  mount(el, errorList(err));
}

/**
 * A uPlot plugin: a tooltip beside the cursor with the x value and every
 * series' value there (non-empty ones), largest first. `xText(i)` and
 * `valueText(seriesIndex, i)` format them.
 */
function tooltip(xText, valueText) {
  let tip;
  return {
    hooks: {
      init: (u) => {
        tip = h('div', { class: 'tooltip', hidden: true });
        u.over.append(tip);
        u.over.addEventListener('mouseleave', () => { tip.hidden = true; });
      },
      setCursor: (u) => {
        const i = u.cursor.idx;
        if (i == null || u.cursor.left < 0) {
          tip.hidden = true;
          return;
        }
        const rows = [];
        for (let s = 1; s < u.series.length; s++) {
          const v = u.data[s][i];
          if (v == null) continue;
          rows.push([s, valueText(s, i)]);
        }
        rows.sort((a, b) => (u.data[b[0]][i] ?? 0) - (u.data[a[0]][i] ?? 0));
        mount(tip, h('strong', {}, xText(i)), rows.slice(0, 12).map(([s, text]) =>
          h('div', {}, h('span', { class: 'swatch', style: `background:${u.series[s]._stroke || u.series[s].stroke || '#888'}` }), `${u.series[s].label}: `, h('b', {}, text))));
        tip.hidden = rows.length === 0;
        const left = u.cursor.left + 14;
        tip.style.left = `${left + 220 > u.over.clientWidth ? u.cursor.left - 230 : left}px`;
        tip.style.top = `${Math.max(0, u.cursor.top - 10)}px`;
      },
    },
  };
}

function disposeChart(el) {
  if (el._plot) {
    el._plot.destroy();
    el._plot = null;
  }
  if (el._resize) {
    el._resize.disconnect();
    el._resize = null;
  }
}

function sizeOf(el) {
  const w = Math.max(260, el.clientWidth || 480);
  return { width: w, height: 240 };
}

function follow(el, plot) {
  el._plot = plot;
  if (typeof ResizeObserver === 'function') {
    el._resize = new ResizeObserver(() => plot.setSize(sizeOf(el)));
    el._resize.observe(el);
  }
}

function timeSeries(el, panel, answer, metric, zone, measures, keys) {
  const times = [...new Set(answer.rows.map((r) => Date.parse(r.__time)))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  // One series per group and measure.
  const series = new Map();
  for (const row of answer.rows) {
    const group = groupLabel(row, keys);
    for (const m of measures) {
      const label = [group, measures.length > 1 || !group ? m : ''].filter(Boolean).join(' · ');
      if (!series.has(label)) series.set(label, new Array(times.length).fill(null));
      series.get(label)[at.get(Date.parse(row.__time))] = row[m];
    }
  }
  const labels = [...series.keys()];
  const raw = labels.map((l) => series.get(l));
  let drawn = raw;
  const stacked = panel.type === 'stacked';
  if (stacked) {
    // Cumulative sums, drawn from the top layer down so each fill shows.
    const sums = new Array(times.length).fill(0);
    drawn = raw.map((values) => values.map((v, i) => (sums[i] += v ?? 0)));
  }
  const order = stacked ? labels.map((_, i) => labels.length - 1 - i) : labels.map((_, i) => i);
  const unit = measures.map((m) => unitOf(metric, m)).join(', ');
  const opts = {
    ...sizeOf(el),
    // A lone bucket gets a minute either side; uPlot would otherwise spread
    // a zero-width range over years.
    scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 60, max + 60] : [min, max]) } },
    tzDate: (ts) => zonedDate(ts, zone),
    axes: [
      { stroke: '#555', grid: { stroke: '#eee' } },
      { stroke: '#555', grid: { stroke: '#eee' }, label: `${measures.join(', ')}${unit ? ` (${unit})` : ''}`, size: 60, values: (u, splits) => splits.map((v) => fmtNumber(v)) },
    ],
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    plugins: [tooltip((i) => fmtTime(times[i], zone), (s, i) => fmtExact(raw[order[s - 1]][i]))],
    series: [
      { label: 'time', value: (u, v) => (v == null ? '–' : fmtTime(v * 1000, zone)) },
      ...order.map((i) => ({
        label: labels[i],
        stroke: COLORS[i % COLORS.length],
        width: 2,
        fill: stacked ? COLORS[i % COLORS.length] + '66' : undefined,
        spanGaps: false,
        points: { show: times.length < 40 },
        value: (u, v, si, idx) => (idx == null ? '–' : fmtExact(raw[i][idx])),
      })),
    ],
  };
  const data = [times.map((t) => t / 1000), ...order.map((i) => drawn[i])];
  el.dataset.points = String(raw.reduce((n, s) => n + s.filter((v) => v !== null).length, 0));
  el.dataset.series = String(labels.length);
  mount(el);
  follow(el, new window.uPlot(opts, data, el));
}

/** uPlot draws in local time unless given dates shifted into the zone. */
function zonedDate(ts, zone) {
  const tz = ianaOrNull(zone) || 'UTC';
  try {
    return window.uPlot.tzDate(new Date(ts * 1000), tz);
  } catch {
    return window.uPlot.tzDate(new Date(ts * 1000), 'UTC');
  }
}

function bars(el, answer, metric, measures, keys) {
  const measure = measures[0];
  const labels = answer.rows.map((r) => (keys.length ? keys.map((k) => r[k]).join(' · ') : 'total'));
  const values = answer.rows.map((r) => r[measure]);
  const xs = labels.map((_, i) => i);
  const unit = unitOf(metric, measure);
  const opts = {
    ...sizeOf(el),
    scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: '#555', grid: { show: false }, splits: () => xs, values: (u, splits) => splits.map((i) => shorten(labels[i] ?? '')), rotate: labels.length > 8 ? -45 : 0, size: labels.length > 8 ? 80 : 40 },
      { stroke: '#555', grid: { stroke: '#eee' }, label: `${measure}${unit ? ` (${unit})` : ''}`, size: 60, values: (u, splits) => splits.map((v) => fmtNumber(v)) },
    ],
    legend: { live: true },
    plugins: [tooltip((i) => labels[i], (s, i) => `${fmtExact(values[i])}${unit ? ` (${unit})` : ''}`)],
    series: [
      { label: keys.join(' · ') || 'group', value: (u, v) => (v == null ? '–' : labels[v] ?? '') },
      { label: measure, fill: COLORS[0] + 'cc', stroke: COLORS[0], paths: window.uPlot.paths.bars({ size: [0.7, 80] }), points: { show: false }, value: (u, v) => fmtExact(v) },
    ],
  };
  el.dataset.points = String(values.filter((v) => v !== null).length);
  el.dataset.series = '1';
  mount(el, measures.length > 1 ? h('p', { class: 'muted note' }, `A bar chart shows the first measure, ${measure}; pick a table for all of them.`) : null);
  const holder = h('div');
  el.append(holder);
  follow(el, new window.uPlot(opts, [xs, values], holder));
}

function shorten(s) {
  s = String(s);
  return s.length > 18 ? s.slice(0, 17) + '…' : s;
}

function bigNumber(el, answer, metric, measures) {
  const row = answer.rows[0];
  el.dataset.points = String(measures.filter((m) => row[m] !== null).length);
  mount(el, h('div', { class: 'numbers' }, measures.map((m) => h('div', { class: 'big' },
    h('div', { class: 'value', title: fmtExact(row[m]) }, fmtNumber(row[m])),
    h('div', { class: 'muted' }, `${m} · ${unitOf(metric, m)}`)))));
}

function table(el, answer, zone) {
  el.dataset.points = String(answer.rows.length);
  const cell = (c, v) => {
    if (c === '__time') return fmtTime(Date.parse(v), zone);
    return typeof v === 'number' ? fmtExact(v) : v ?? '–';
  };
  mount(el, h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, answer.columns.map((c) => h('th', {}, c === '__time' ? 'time' : c)))),
    h('tbody', {}, answer.rows.map((r) => h('tr', {}, answer.columns.map((c) => h('td', { class: typeof r[c] === 'number' ? 'num' : '' }, cell(c, r[c])))))))));
}
