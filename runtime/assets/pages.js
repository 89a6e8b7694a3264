// The pages around dashboards: signing in, the list of dashboards, the
// status of the running topology, and users (admins).

import { h, mount, select, fmtExact, ago } from './util.js';
import { api, signIn } from './api.js';
import { errorList } from './builder.js';

/** The sign-in page: a token, as `statflow run` or an admin printed it. */
export function signInPage(root, onSignedIn, message) {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'sf_…', size: 50, 'aria-label': 'Token' });
  const errors = h('div', {}, message ? h('p', { class: 'muted' }, message) : null);
  const form = h('form', { class: 'card signin' },
    h('h1', {}, 'Sign in to statflow'),
    h('p', {}, 'Paste your token. The first one is printed by ', h('code', {}, 'statflow run'),
      ' when it first starts; admins make more with ', h('code', {}, 'statflow user add NAME --role viewer'), '.'),
    token, ' ', h('button', { class: 'primary', type: 'submit', name: 'sign-in' }, 'Sign in'),
    errors);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const user = await signIn(token.value);
      onSignedIn(user);
    } catch (err) {
      mount(errors, errorList(err));
    }
  });
  mount(root, form);
  token.focus();
}

/** Every dashboard the user may open. */
export async function dashboardsPage(root, me) {
  const { dashboards } = await api.get('/v1/dashboards');
  const canCreate = me.role === 'editor' || me.role === 'admin';
  mount(root,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Dashboards'), h('span', { class: 'spacer' }),
      canCreate ? h('a', { class: 'button primary', href: '#/new', name: 'new-dashboard' }, 'New dashboard') : null),
    dashboards.length
      ? h('table', { class: 'list', id: 'dashboards' },
        h('thead', {}, h('tr', {}, ['Title', 'Owner', 'Your access', 'Shared', 'Changed'].map((t) => h('th', {}, t)))),
        h('tbody', {}, dashboards.map((d) => h('tr', {},
          h('td', {}, h('a', { href: `#/d/${d.id}` }, d.title),
            d.builtin ? h('span', { class: 'muted', title: 'statflow made this dashboard from the topology' }, ' · by statflow') : null),
          h('td', {}, d.owner),
          h('td', {}, d.access),
          h('td', {}, sharedText(d.sharing)),
          h('td', {}, ago(d.updated_ms))))))
      : h('div', { class: 'empty' }, h('strong', {}, 'No dashboards yet.'),
        h('p', {}, canCreate ? 'Make one with "New dashboard".' : 'None is shared with you yet; ask an editor to share one.')));
}

/** A Kafka source's connection to its brokers (other sources have none). */
function brokerCell(b) {
  if (!b) return h('td', { class: 'muted' }, '–');
  const detail = [`since ${b.since}`, b.error, b.retries ? `${b.retries} retries` : null].filter(Boolean).join(' · ');
  return h('td', { class: b.state === 'unreachable' ? 'bad' : '', title: detail, dataset: { broker: b.state } },
    b.state === 'connected' ? 'connected' : `${b.state} (${b.workers} worker${b.workers === 1 ? '' : 's'})`);
}

function sharedText(s) {
  const parts = [];
  if (s.everyone) parts.push('everyone');
  if (s.users.length) parts.push(s.users.map((u) => `${u.user} (${u.access})`).join(', '));
  return parts.join('; ') || 'private';
}

/** Sources, workers, lag and the watermark, from /v1/status. */
export async function statusPage(root) {
  const s = await api.get('/v1/status');
  if (s.error) {
    return mount(root, h('div', { class: 'error' }, `The status could not be read: ${s.error}`));
  }
  const sources = s.sources || [];
  const lagOf = (src) => (src.workers || []).flatMap((w) => w.partitions || []).reduce((n, p) => n + (p.lag || 0), 0);
  mount(root,
    h('h1', {}, 'Status'),
    h('p', {}, `${s.processes} process(es), ${(s.workers || []).length} worker(s); epochs complete up to `,
      h('strong', {}, String(s.epoch?.complete ?? '–')), `, open ${s.epoch?.open ?? '–'}; ${fmtExact(s.queries ?? 0)} queries answered.`,
      s.degraded ? h('strong', { class: 'bad' }, ' The cluster is degraded.') : null),
    h('h2', {}, 'Sources'),
    h('table', { class: 'list', id: 'sources' },
      h('thead', {}, h('tr', {}, ['Source', 'Kind', 'Records', 'Errors', 'Lag (records)', 'Watermark', 'Brokers', 'Finished'].map((t) => h('th', {}, t)))),
      h('tbody', {}, sources.map((src) => h('tr', {},
        h('td', {}, src.name), h('td', {}, src.kind),
        h('td', { class: 'num' }, fmtExact(src.records)), h('td', { class: 'num' }, fmtExact(src.errors)),
        h('td', { class: 'num' }, fmtExact(lagOf(src))),
        h('td', {}, src.watermark ?? 'no event yet'), brokerCell(src.broker), h('td', {}, src.finished ? 'yes' : 'no'))))),
    h('h2', {}, 'Workers'),
    h('table', { class: 'list', id: 'workers' },
      h('thead', {}, h('tr', {}, ['Worker', 'Process', 'Open epoch', 'Records', 'Errors'].map((t) => h('th', {}, t)))),
      h('tbody', {}, (s.workers || []).map((w) => {
        const per = sources.flatMap((src) => (src.workers || []).filter((x) => x.worker === w.worker));
        return h('tr', {},
          h('td', {}, w.worker), h('td', {}, w.process), h('td', { class: 'num' }, w.epoch),
          h('td', { class: 'num' }, fmtExact(per.reduce((n, x) => n + x.records, 0))),
          h('td', { class: 'num' }, fmtExact(per.reduce((n, x) => n + x.errors, 0))));
      }))));
}

/**
 * Users (admins): add, rotate a token, remove. Tokens are shown once.
 * User names go into paths as they are: the server allows only letters,
 * digits and . _ - @, all of which a path segment may hold.
 */
export async function usersPage(root, me, made = null) {
  const { users } = await api.get('/v1/users');
  const shown = h('div', { id: 'new-token' });
  const errors = h('div');
  const name = h('input', { name: 'new-user', placeholder: 'name', 'aria-label': 'New user name' });
  const role = select(['viewer', 'editor', 'admin'], 'viewer', { name: 'new-role', 'aria-label': 'Role' });
  // `made` ({who, token}) is a user just added, whose token the new page shows.
  const reload = (justMade = null) => usersPage(root, me, justMade);
  const showToken = (who, token) => mount(shown, h('div', { class: 'card token' },
    h('p', {}, `The token of ${who}, shown only this once; hand it over safely:`),
    h('code', { class: 'token-value' }, token)));
  const add = h('form', { class: 'inline' }, name, role, h('button', { type: 'submit', name: 'add-user' }, 'Add user'));
  add.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const r = await api.post('/v1/users', { name: name.value.trim(), role: role.value });
      await reload({ who: r.user.name, token: r.token });
    } catch (err) {
      mount(errors, errorList(err));
    }
  });
  mount(root,
    h('h1', {}, 'Users'),
    add, errors, shown,
    h('table', { class: 'list', id: 'users' },
      h('thead', {}, h('tr', {}, ['Name', 'Role', 'Added', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, users.map((u) => h('tr', {},
        h('td', {}, u.name), h('td', {}, u.role), h('td', {}, ago(u.created_ms)),
        h('td', {},
          h('button', { class: 'link', onclick: async () => {
            if (!confirm(`Give ${u.name} a new token? The old one stops working at once.`)) return;
            const r = await api.post(`/v1/users/${u.name}/token`);
            showToken(u.name, r.token);
          } }, 'new token'),
          u.name === me.name ? null : h('button', { class: 'link danger', onclick: async () => {
            if (!confirm(`Remove ${u.name} and the dashboards they own?`)) return;
            await api.del(`/v1/users/${u.name}`);
            reload();
          } }, 'remove')))))));
  if (made) showToken(made.who, made.token);
}
