// The query builder: one panel's metric, measures, group-by, granularity,
// filters and chart type, driven by the catalog; and the query a panel
// sends for a dashboard's time range.

import { h, select, mount } from './util.js';
import { query, ApiError } from './api.js';

export const CHART_TYPES = [
  ['lines', 'Time series: lines'],
  ['stacked', 'Time series: stacked areas'],
  ['bar', 'Bar chart'],
  ['number', 'Big number'],
  ['table', 'Table'],
];

export const RANGES = [
  ['1h', 'Last 1 hour'],
  ['6h', 'Last 6 hours'],
  ['24h', 'Last 24 hours'],
  ['7d', 'Last 7 days'],
  ['absolute', 'From … to …'],
];

/** True for chart types drawn over time. */
export function overTime(type) {
  return type === 'lines' || type === 'stacked';
}

/** A new panel for `metric` (the catalog's entry). */
export function newPanel(metric) {
  return {
    id: Math.random().toString(36).slice(2, 10),
    title: metric ? metric.name : 'New panel',
    type: 'lines',
    query: {
      metric: metric ? metric.name : '',
      measures: metric && metric.measures.length ? [metric.measures[0].name] : [],
      group_by: [],
      granularity: metric ? metric.window.step : '',
      filters: [],
      limit: null,
    },
  };
}

/** The time window of a dashboard range. */
export function timeWindow(range) {
  if (range && range.kind === 'absolute') {
    return { kind: 'absolute', from: range.from, to: range.to };
  }
  return { kind: 'relative', last: (range && range.last) || '6h' };
}

/** The filters of a panel (rows of {dimension, op, values}) as the query language writes them. */
export function filtersOf(rows) {
  const conds = [];
  for (const r of rows || []) {
    if (!r.dimension || !r.values || !r.values.length) continue;
    if (r.op === 'regex') conds.push({ [r.dimension]: r.values[0] });
    else if (r.op === 'not') conds.push({ not: { [r.dimension]: r.values } });
    else conds.push({ [r.dimension]: r.values });
  }
  if (conds.length === 0) return null;
  if (conds.length === 1) return conds[0];
  return { and: conds };
}

/** The body of POST /v1/query for a panel, a range and a zone; `epoch` pins the read. */
export function panelQuery(panel, range, zone, epoch) {
  const q = panel.query;
  const body = {
    metric: q.metric,
    time_window: timeWindow(range),
    time_zone: zone || 'UTC',
  };
  if (q.measures && q.measures.length) body.measures = q.measures;
  const groups = panel.type === 'number' ? [] : [...(q.group_by || [])];
  if (overTime(panel.type)) {
    body.group_by = ['__time', ...groups];
    if (q.granularity) body.granularity = q.granularity;
  } else if (groups.length) {
    body.group_by = groups;
  }
  const filters = filtersOf(q.filters);
  if (filters) body.filters = filters;
  if (panel.type === 'bar' && q.measures && q.measures.length && groups.length) {
    body.order_by = [{ field: q.measures[0], desc: true }];
  }
  if (q.limit) body.limit = q.limit;
  if (epoch !== undefined && epoch !== null) body.epoch = epoch;
  return body;
}

/** Values of `dimension` seen in the range, most frequent first (for suggestions). */
export async function suggestValues(metric, dimension, range) {
  const body = {
    metric: metric.name,
    time_window: timeWindow(range),
    group_by: [dimension],
    limit: 50,
  };
  const first = metric.measures[0];
  if (first) {
    body.measures = [first.name];
    body.order_by = [{ field: first.name, desc: true }];
  }
  try {
    const answer = await query(body);
    return answer.rows.map((r) => r[dimension]).filter((v) => v !== null && v !== undefined).map(String);
  } catch {
    return [];
  }
}

/**
 * The editor of one panel. `onChange(panel)` is called on every edit;
 * `errors` (validation errors of the last run) are shown beside their fields.
 */
export function panelEditor(catalog, panel, range, onChange) {
  const root = h('div', { class: 'editor' });
  const metrics = catalog.metrics.filter((m) => m.queryable !== false);
  let p = structuredClone(panel);

  const emit = () => {
    onChange(structuredClone(p));
    render();
  };
  const metricOf = () => metrics.find((m) => m.name === p.query.metric) || metrics[0];

  function render() {
    const m = metricOf();
    if (m && p.query.metric !== m.name) p.query.metric = m.name;
    const title = h('input', { value: p.title, 'aria-label': 'Panel title', name: 'title' });
    title.addEventListener('change', () => { p.title = title.value; emit(); });

    const metricSel = select(metrics.map((x) => [x.name, x.name]), p.query.metric, { name: 'metric', 'aria-label': 'Metric' });
    metricSel.addEventListener('change', () => {
      const next = metrics.find((x) => x.name === metricSel.value);
      const fresh = newPanel(next);
      p.query = fresh.query;
      if (!p.title || metrics.some((x) => x.name === p.title)) p.title = next.name;
      emit();
    });

    const typeSel = select(CHART_TYPES, p.type, { name: 'type', 'aria-label': 'Chart type' });
    typeSel.addEventListener('change', () => { p.type = typeSel.value; emit(); });

    const measures = h('div', { class: 'checks', 'data-field': 'measures' },
      (m ? m.measures : []).map((x) => {
        const box = h('input', { type: 'checkbox', name: 'measure', value: x.name, checked: p.query.measures.includes(x.name) });
        box.addEventListener('change', () => {
          const set = new Set(p.query.measures);
          if (box.checked) set.add(x.name); else set.delete(x.name);
          p.query.measures = m.measures.map((y) => y.name).filter((n) => set.has(n));
          emit();
        });
        return h('label', { title: `${x.text}: ${x.error}` }, box, ` ${x.name}`, h('span', { class: 'muted' }, ` ${x.text}`));
      }));

    const groups = h('div', { class: 'checks', 'data-field': 'group_by' },
      (m ? m.dimensions : []).map((d) => {
        const box = h('input', { type: 'checkbox', name: 'group', value: d.name, checked: p.query.group_by.includes(d.name) });
        box.addEventListener('change', () => {
          const set = new Set(p.query.group_by);
          if (box.checked) set.add(d.name); else set.delete(d.name);
          p.query.group_by = m.dimensions.map((y) => y.name).filter((n) => set.has(n));
          emit();
        });
        return h('label', {}, box, ` ${d.name}`);
      }));

    const gran = select((m ? m.granularities : []).map((g) => [g, g]), p.query.granularity, { name: 'granularity', 'aria-label': 'Granularity', disabled: !overTime(p.type) });
    gran.addEventListener('change', () => { p.query.granularity = gran.value; emit(); });

    const limit = h('input', { type: 'number', min: 1, name: 'limit', placeholder: 'all', value: p.query.limit ?? '' });
    limit.addEventListener('change', () => { p.query.limit = limit.value ? Number(limit.value) : null; emit(); });

    const filters = h('div', { class: 'filters', 'data-field': 'filters' },
      p.query.filters.map((f, i) => filterRow(m, f, i)),
      h('button', { type: 'button', class: 'small', onclick: () => {
        p.query.filters.push({ dimension: m.dimensions[0]?.name || '', op: 'in', values: [] });
        emit();
      } }, '+ Filter'));

    mount(root,
      row('Title', title),
      row('Metric', metricSel, m ? h('span', { class: 'muted' }, ` window ${m.window.text}, kept ${m.retention}`) : null),
      row('Chart', typeSel),
      row('Measures', measures),
      row(p.type === 'number' ? 'Group by (not used by a big number)' : 'Group by', groups),
      row('Granularity', gran, overTime(p.type) ? null : h('span', { class: 'muted' }, ' (time series only)')),
      row('Filters', filters),
      row('Limit', limit));
  }

  function filterRow(m, f, i) {
    const dim = select(m.dimensions.map((d) => [d.name, d.name]), f.dimension, { 'aria-label': 'Filter dimension', name: 'filter-dimension' });
    dim.addEventListener('change', () => { f.dimension = dim.value; f.values = []; emit(); });
    const op = select([['in', 'is one of'], ['not', 'is none of'], ['regex', 'matches the regex']], f.op, { 'aria-label': 'Filter operator' });
    op.addEventListener('change', () => { f.op = op.value; if (f.op === 'regex') f.values = f.values.slice(0, 1); emit(); });
    const listId = `values-${p.id}-${i}`;
    const list = h('datalist', { id: listId });
    const input = h('input', { list: listId, placeholder: f.op === 'regex' ? 'a|b.*' : 'type or pick a value, Enter', name: 'filter-value', 'aria-label': 'Filter value' });
    input.addEventListener('focus', async () => {
      if (list.childElementCount) return;
      const values = await suggestValues(m, f.dimension, range());
      mount(list, values.map((v) => h('option', { value: v })));
    });
    const add = () => {
      const v = input.value.trim();
      if (!v) return;
      if (f.op === 'regex') f.values = [v];
      else if (!f.values.includes(v)) f.values.push(v);
      emit();
    };
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); add(); } });
    input.addEventListener('change', add);
    const chips = f.values.map((v) => h('span', { class: 'chip' }, v, h('button', { type: 'button', class: 'link', 'aria-label': `Remove ${v}`, onclick: () => { f.values = f.values.filter((x) => x !== v); emit(); } }, '×')));
    const remove = h('button', { type: 'button', class: 'link', onclick: () => { p.query.filters.splice(i, 1); emit(); } }, 'remove');
    return h('div', { class: 'filter', 'data-field': `filters.${f.dimension}` }, dim, op, chips, input, list, remove);
  }

  render();
  return root;
}

function row(label, ...controls) {
  return h('div', { class: 'row' }, h('span', { class: 'label' }, label), h('div', { class: 'controls' }, controls));
}

/** The server's validation errors as a list with their field paths. */
export function errorList(err) {
  if (!(err instanceof ApiError)) return h('div', { class: 'error' }, String(err));
  const items = err.errors.length ? err.errors : [{ code: err.code, message: err.message, path: err.path }];
  return h('div', { class: 'error', role: 'alert' },
    h('strong', {}, err.status === 400 ? 'The server refused this query:' : `Error ${err.status || ''}:`),
    h('ul', {}, items.map((e) => h('li', {},
      e.path ? h('code', {}, e.path) : null, e.path ? ': ' : '', e.message, ' ', h('span', { class: 'muted' }, `(${e.code})`)))));
}
