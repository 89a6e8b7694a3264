// Small helpers: building DOM nodes, formatting numbers and times.

/** Builds an element: h('div', {class: 'x', onclick: f}, child, 'text', ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  // Removing a focused field fires its blur and change handlers, which may
  // mount this same element again while it is being emptied (Chromium
  // refuses that). Blur it first, so those handlers run before, not during.
  const active = document.activeElement;
  if (active && active !== document.body && el.contains(active)) active.blur();
  el.replaceChildren();
  for (const c of children.flat(Infinity)) if (c) el.append(c);
  return el;
}

/** A select element from [value, label] pairs (or plain values). */
export function select(options, value, attrs = {}) {
  const el = h('select', attrs);
  for (const o of options) {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    const opt = h('option', { value: v }, label);
    if (String(v) === String(value)) opt.selected = true;
    el.append(opt);
  }
  return el;
}

const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 2 });
const plain = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });

/** A number for an axis or a big number: 1.2K, 3.4M; small ones as they are. */
export function fmtNumber(v, unit = '') {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const text = Math.abs(v) >= 10000 ? compact.format(v) : plain.format(v);
  return unit ? `${text} ${unit}` : text;
}

/** A full number for tables and tooltips. */
export function fmtExact(v) {
  if (typeof v !== 'number') return v === null || v === undefined ? '–' : String(v);
  return plain.format(v);
}

/** A time in a zone ('UTC', '+08:00' or an IANA name) for tooltips and tables. */
export function fmtTime(ms, zone) {
  const opts = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false };
  const tz = ianaOrNull(zone);
  try {
    return new Intl.DateTimeFormat('en-CA', { ...opts, timeZone: tz || 'UTC' }).format(new Date(ms)).replace(',', '');
  } catch {
    return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
  }
}

/** Intl takes IANA names and 'UTC'; fixed offsets such as +08:00 become Etc/GMT-8 when whole hours. */
export function ianaOrNull(zone) {
  if (!zone || zone === 'Z' || zone === 'UTC') return 'UTC';
  const m = /^([+-])(\d{2}):(\d{2})$/.exec(zone);
  if (m) {
    if (m[3] !== '00') return null;
    const hours = Number(m[2]);
    return hours === 0 ? 'UTC' : `Etc/GMT${m[1] === '+' ? '-' : '+'}${hours}`;
  }
  return zone;
}

/** A short random id for panels. */
export function rid() {
  return Math.random().toString(36).slice(2, 10);
}

/** "3 s ago", "2 min ago". */
export function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
