// A dashboard: a grid of panels sharing one time range and one refresh.
// Every refresh reads one epoch: the first panel asks without `epoch`, the
// others at the first answer's `as_of.epoch`, so all panels show one cut.

import { h, mount, select, fmtTime } from './util.js';
import { api, catalog, query, ApiError } from './api.js';
import { RANGES, newPanel, panelEditor, panelQuery, errorList } from './builder.js';
import { drawAnswer, drawError } from './panels.js';

// Seconds between refreshes; 0 is off, -1 live (GET /v1/events says when a newer epoch is complete).
const REFRESH = [[0, 'Off'], [-1, 'Live'], [10, 'Every 10 s'], [30, 'Every 30 s'], [60, 'Every minute'], [300, 'Every 5 minutes']];

/** A spec for a new dashboard. */
export function emptySpec() {
  return { version: 1, range: { kind: 'relative', last: '6h' }, time_zone: 'UTC', refresh: 300, panels: [] };
}

/**
 * Opens a dashboard in `root`. `dashboard` is the API's object, or null for
 * a new one. `me` is the signed-in user. Returns a function that stops its timers.
 */
export async function openDashboard(root, dashboard, me, navigate) {
  const cat = await catalog();
  const state = {
    d: dashboard,
    title: dashboard ? dashboard.title : 'New dashboard',
    spec: normalize(dashboard ? structuredClone(dashboard.spec) : emptySpec(), cat),
    dirty: !dashboard,
    timer: null,
    events: null,
    busy: false,
    generation: 0,
    asOf: null,
  };
  const access = dashboard ? dashboard.access : 'owner';
  const canEdit = access === 'edit' || access === 'owner';
  const isOwner = access === 'owner';
  const canCreate = me.role === 'editor' || me.role === 'admin';

  const grid = h('div', { class: 'grid', id: 'panels' });
  const stamp = h('span', { class: 'muted', id: 'as-of' });
  const saved = h('span', { class: 'muted', id: 'saved' });
  const message = h('div', { id: 'dashboard-message' });

  function setTimer() {
    clearInterval(state.timer);
    if (state.events) {
      state.events.close();
      state.events = null;
    }
    if (state.spec.refresh > 0) state.timer = setInterval(refresh, state.spec.refresh * 1000);
    if (state.spec.refresh < 0) {
      state.events = new EventSource('/v1/events');
      // A refresh still running when the next epoch completes is not doubled.
      state.events.addEventListener('epoch', () => { if (!state.busy) refresh(); });
    }
  }

  function markDirty() {
    state.dirty = true;
    saved.textContent = canEdit ? 'unsaved changes' : 'changes are not saved (view only)';
  }

  const range = () => state.spec.range;

  function toolbar() {
    const title = h('input', { class: 'title', value: state.title, 'aria-label': 'Dashboard title', name: 'dashboard-title', readonly: !canEdit });
    title.addEventListener('change', () => { state.title = title.value; markDirty(); });

    const rangeKind = state.spec.range.kind === 'absolute' ? 'absolute' : state.spec.range.last;
    const rangeSel = select(RANGES, rangeKind, { name: 'range', 'aria-label': 'Time range' });
    const from = h('input', { type: 'datetime-local', name: 'from', 'aria-label': 'From', value: localInput(state.spec.range.from) });
    const to = h('input', { type: 'datetime-local', name: 'to', 'aria-label': 'To', value: localInput(state.spec.range.to) });
    const zone = h('input', { name: 'time-zone', 'aria-label': 'Time zone', value: state.spec.time_zone, size: 14, title: 'UTC, an offset such as +08:00, or a zone name such as Asia/Shanghai' });
    const absolute = h('span', { class: 'absolute', hidden: rangeKind !== 'absolute' }, from, ' to ', to);
    const applyRange = () => {
      if (rangeSel.value === 'absolute') {
        absolute.hidden = false;
        if (!from.value || !to.value) {
          const now = Date.now();
          from.value = localInput(new Date(now - 6 * 3600e3).toISOString());
          to.value = localInput(new Date(now).toISOString());
        }
        const off = offsetOf(zone.value);
        state.spec.range = { kind: 'absolute', from: `${from.value}:00${off}`, to: `${to.value}:00${off}` };
      } else {
        absolute.hidden = true;
        state.spec.range = { kind: 'relative', last: rangeSel.value };
      }
      state.spec.time_zone = zone.value.trim() || 'UTC';
      markDirty();
      refresh();
    };
    for (const el of [rangeSel, from, to, zone]) el.addEventListener('change', applyRange);

    const refreshSel = select(REFRESH, state.spec.refresh, { name: 'refresh', 'aria-label': 'Refresh' });
    refreshSel.addEventListener('change', () => { state.spec.refresh = Number(refreshSel.value); setTimer(); markDirty(); });

    return h('div', { class: 'toolbar' },
      title,
      h('span', { class: 'group' }, rangeSel, absolute, zone),
      h('span', { class: 'group' }, refreshSel, h('button', { onclick: refresh, name: 'refresh-now' }, 'Refresh')),
      h('span', { class: 'group' },
        canEdit ? h('button', { onclick: addPanel, name: 'add-panel' }, 'Add panel') : null,
        canEdit ? h('button', { class: 'primary', onclick: save, name: 'save' }, 'Save') : null,
        canCreate && state.d ? h('button', { onclick: duplicate, name: 'duplicate' }, 'Duplicate') : null,
        isOwner && state.d ? h('button', { onclick: share, name: 'share' }, 'Share') : null,
        isOwner && state.d ? h('button', { class: 'danger', onclick: remove, name: 'delete' }, 'Delete') : null),
      h('div', { class: 'meta' }, state.d ? `by ${state.d.owner} · your access: ${access}` : 'not saved yet', ' · ', saved, ' · ', stamp,
        state.d && state.d.builtin ? h('div', { class: 'muted', id: 'builtin-note' },
          'statflow made this dashboard from the topology\'s telemetry metric and keeps it in step with the metric until someone edits it.') : null));
  }

  function panelCard(panel, index) {
    const body = h('div', { class: 'panel-body', dataset: { panel: panel.id } });
    const card = h('section', { class: 'panel', dataset: { panel: panel.id, type: panel.type } },
      h('header', {},
        h('h3', {}, panel.title),
        canEdit ? h('span', { class: 'actions' },
          index > 0 ? h('button', { class: 'link', title: 'Move left', 'aria-label': 'Move left', onclick: () => move(index, -1) }, '◀') : null,
          index < state.spec.panels.length - 1 ? h('button', { class: 'link', title: 'Move right', 'aria-label': 'Move right', onclick: () => move(index, 1) }, '▶') : null,
          h('button', { class: 'link', onclick: () => editPanel(index), name: 'edit-panel' }, 'edit'),
          h('button', { class: 'link', onclick: () => { state.spec.panels.splice(index, 1); markDirty(); render(); refresh(); } }, 'remove')) : null),
      body);
    return card;
  }

  function move(index, by) {
    const [panel] = state.spec.panels.splice(index, 1);
    state.spec.panels.splice(index + by, 0, panel);
    markDirty();
    render();
    refresh();
  }

  function render() {
    mount(grid, state.spec.panels.length
      ? state.spec.panels.map(panelCard)
      : h('div', { class: 'empty' }, h('strong', {}, 'This dashboard has no panels yet.'),
        h('p', {}, canEdit ? 'Use "Add panel" to pick a metric, measures and a chart.' : 'Its owner has not added any.')));
    mount(root, toolbar(), message, grid);
  }

  /** Runs every panel's query at one epoch. */
  async function refresh() {
    state.busy = true;
    try {
      await refreshPanels();
    } finally {
      state.busy = false;
    }
  }

  async function refreshPanels() {
    const generation = ++state.generation;
    const panels = state.spec.panels;
    const bodies = panels.map((p) => grid.querySelector(`.panel-body[data-panel="${p.id}"]`));
    for (const b of bodies) if (b && !b.dataset.state) b.textContent = 'Loading…';
    let epoch = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      epoch = null;
      let restart = false;
      for (let i = 0; i < panels.length; i++) {
        const p = panels[i];
        const metric = cat.metrics.find((m) => m.name === p.query.metric);
        try {
          const answer = await query(panelQuery(p, state.spec.range, state.spec.time_zone, epoch));
          if (generation !== state.generation) return;
          if (epoch === null) {
            epoch = answer.as_of.epoch;
            state.asOf = answer.as_of;
          }
          if (bodies[i]) drawAnswer(bodies[i], p, answer, metric, state.spec.time_zone);
        } catch (err) {
          if (generation !== state.generation) return;
          // The pinned epoch was compacted while the panels were asked: start over.
          if (err instanceof ApiError && err.code === 'epoch_not_readable' && attempt === 0) {
            restart = true;
            break;
          }
          if (bodies[i]) drawError(bodies[i], err);
        }
      }
      if (!restart) break;
    }
    if (state.asOf) {
      stamp.textContent = `epoch ${state.asOf.epoch} · data up to ${state.asOf.watermark ?? '–'} · refreshed ${fmtTime(Date.now(), state.spec.time_zone)}`;
      grid.dataset.epoch = String(state.asOf.epoch);
    }
  }

  function addPanel() {
    const metric = cat.metrics.find((m) => m.queryable !== false);
    state.spec.panels.push(newPanel(metric));
    markDirty();
    editPanel(state.spec.panels.length - 1);
  }

  function editPanel(index) {
    let draft = structuredClone(state.spec.panels[index]);
    const preview = h('div', { class: 'panel-body preview' });
    // Every edit runs the preview again; only the newest run may draw, so a
    // slow answer to an older draft never replaces a newer one.
    let latest = 0;
    const run = async () => {
      const mine = ++latest;
      try {
        const answer = await query(panelQuery(draft, state.spec.range, state.spec.time_zone, null));
        if (mine === latest) drawAnswer(preview, draft, answer, cat.metrics.find((m) => m.name === draft.query.metric), state.spec.time_zone);
      } catch (err) {
        if (mine === latest) drawError(preview, err);
      }
    };
    const editor = panelEditor(cat, draft, range, (p) => { draft = p; run(); });
    const dialog = h('div', { class: 'dialog', role: 'dialog', 'aria-label': 'Edit panel' },
      h('h2', {}, 'Panel'),
      h('div', { class: 'split' }, editor, h('div', {}, h('h4', {}, 'Preview'), preview)),
      h('div', { class: 'buttons' },
        h('button', { onclick: () => { dialog.remove(); render(); refresh(); } }, 'Cancel'),
        h('button', { class: 'primary', name: 'apply-panel', onclick: () => {
          state.spec.panels[index] = draft;
          markDirty();
          dialog.remove();
          render();
          refresh();
        } }, 'Apply')));
    document.body.append(dialog);
    run();
  }

  async function save() {
    const body = { title: state.title, spec: state.spec };
    try {
      if (state.d) {
        state.d = await api.put(`/v1/dashboards/${state.d.id}`, body);
      } else {
        state.d = await api.post('/v1/dashboards', body);
        stop();
        navigate(`#/d/${state.d.id}`);
        return;
      }
      state.dirty = false;
      saved.textContent = 'saved';
      mount(message);
    } catch (err) {
      mount(message, errorList(err));
    }
  }

  async function duplicate() {
    try {
      const copy = await api.post('/v1/dashboards', { title: `${state.title} (copy)`, spec: state.spec });
      stop();
      navigate(`#/d/${copy.id}`);
    } catch (err) {
      mount(message, errorList(err));
    }
  }

  async function remove() {
    if (!confirm(`Delete the dashboard "${state.title}"? This cannot be undone.`)) return;
    try {
      await api.del(`/v1/dashboards/${state.d.id}`);
      stop();
      navigate('#/');
    } catch (err) {
      mount(message, errorList(err));
    }
  }

  function share() {
    document.body.append(shareDialog(state.d, (d) => { state.d = d; }));
  }

  function stop() {
    clearInterval(state.timer);
    if (state.events) state.events.close();
    state.generation++;
  }

  render();
  saved.textContent = state.dirty ? 'unsaved' : 'saved';
  setTimer();
  refresh();
  return stop;
}

/** Fills in what an older or hand-written spec lacks. */
function normalize(spec, cat) {
  const s = { ...emptySpec(), ...(spec || {}) };
  s.panels = (s.panels || []).filter((p) => p && p.query).map((p) => ({
    ...newPanel(cat.metrics.find((m) => m.name === p.query.metric)),
    ...p,
    query: { filters: [], group_by: [], measures: [], ...p.query },
  }));
  return s;
}

/** The sharing dialog of a dashboard. */
export function shareDialog(d, onSaved) {
  const sharing = structuredClone(d.sharing);
  const errors = h('div');
  const list = h('ul', { class: 'shares' });
  const everyone = h('input', { type: 'checkbox', name: 'everyone', checked: sharing.everyone });
  const name = h('input', { name: 'share-user', placeholder: 'user name', 'aria-label': 'User to share with' });
  const access = select([['view', 'can view'], ['edit', 'can edit']], 'view', { name: 'share-access', 'aria-label': 'Access' });
  const link = `${location.origin}/#/d/${d.id}`;

  function renderList() {
    mount(list, sharing.users.length ? sharing.users.map((s, i) => h('li', {},
      `${s.user} `,
      (() => {
        const sel = select([['view', 'can view'], ['edit', 'can edit']], s.access);
        sel.addEventListener('change', () => { s.access = sel.value; });
        return sel;
      })(),
      h('button', { class: 'link', onclick: () => { sharing.users.splice(i, 1); renderList(); } }, 'remove'))) : h('li', { class: 'muted' }, 'No one by name.'));
  }
  renderList();

  const dialog = h('div', { class: 'dialog', role: 'dialog', 'aria-label': 'Share dashboard' },
    h('h2', {}, `Share "${d.title}"`),
    h('p', {}, 'Link: ', h('input', { readonly: true, value: link, size: 40, name: 'share-link', onclick: (e) => e.target.select() }),
      h('span', { class: 'muted' }, ' — opens the dashboard for whoever may see it.')),
    h('label', {}, everyone, ' Everyone signed in may view it'),
    h('h4', {}, 'People'),
    list,
    h('div', {}, name, access, h('button', { name: 'add-share', onclick: () => {
      const n = name.value.trim();
      if (!n) return;
      sharing.users = sharing.users.filter((s) => s.user !== n);
      sharing.users.push({ user: n, access: access.value });
      name.value = '';
      renderList();
    } }, 'Add')),
    errors,
    h('div', { class: 'buttons' },
      h('button', { onclick: () => dialog.remove() }, 'Close'),
      h('button', { class: 'primary', name: 'save-sharing', onclick: async () => {
        sharing.everyone = everyone.checked;
        try {
          const saved = await api.put(`/v1/dashboards/${d.id}/sharing`, sharing);
          onSaved(saved);
          dialog.remove();
        } catch (err) {
          mount(errors, errorList(err));
        }
      } }, 'Save sharing')));
  return dialog;
}

/** "2024-08-20T09:00:00+08:00" → "2024-08-20T09:00" for a datetime-local input. */
function localInput(text) {
  if (!text) return '';
  return String(text).slice(0, 16);
}

/** The offset to write after a local time typed for `zone`: fixed offsets as they are, UTC as Z. */
function offsetOf(zone) {
  const z = (zone || '').trim();
  if (/^[+-]\d{2}:\d{2}$/.test(z)) return z;
  if (!z || z === 'UTC' || z === 'Z') return 'Z';
  // A zone name: its offset now (close enough for picking a window by hand).
  try {
    const parts = new Intl.DateTimeFormat('en', { timeZone: z, timeZoneName: 'longOffset' }).formatToParts(new Date());
    const name = parts.find((p) => p.type === 'timeZoneName')?.value || 'GMT';
    const m = /GMT([+-]\d{2}):?(\d{2})?/.exec(name);
    return m ? `${m[1]}:${m[2] || '00'}` : 'Z';
  } catch {
    return 'Z';
  }
}
