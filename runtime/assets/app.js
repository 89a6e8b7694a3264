// statflow's web app: signs in, then routes between the dashboards list
// (#/), a dashboard (#/d/ID), a new one (#/new), the status (#/status) and
// users (#/users). A sign-in link (#token=…) signs in and forgets the token.

import { h, mount } from './util.js';
import { api, signIn, signOut, whoAmI, whenSignedOut, ApiError } from './api.js';
import { signInPage, dashboardsPage, statusPage, usersPage } from './pages.js';
import { openDashboard } from './dashboard.js';
import { errorList } from './builder.js';

const root = document.getElementById('app');
let me = null;
let stopPage = null;
let wanted = null;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function showUser() {
  document.getElementById('nav').hidden = !me;
  document.getElementById('nav-users').hidden = !me || me.role !== 'admin';
  document.getElementById('who').textContent = me ? `${me.name} (${me.role})` : '';
  document.getElementById('sign-out').hidden = !me || me.via === 'none';
}

async function route() {
  if (stopPage) {
    stopPage();
    stopPage = null;
  }
  for (const d of document.querySelectorAll('.dialog')) d.remove();
  if (!me) {
    wanted = location.hash;
    return signInPage(root, afterSignIn);
  }
  const hash = location.hash || '#/';
  const m = /^#\/d\/([0-9a-f]+)$/.exec(hash);
  try {
    if (m) {
      mount(root, h('p', { class: 'muted' }, 'Opening…'));
      const d = await api.get(`/v1/dashboards/${m[1]}`);
      stopPage = await openDashboard(root, d, me, navigate);
    } else if (hash === '#/new') {
      stopPage = await openDashboard(root, null, me, navigate);
    } else if (hash === '#/status') {
      await statusPage(root);
    } else if (hash === '#/users') {
      await usersPage(root, me);
    } else {
      await dashboardsPage(root, me);
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    mount(root, h('div', { class: 'refused', id: 'refused' },
      h('h1', {}, err.status === 403 ? 'You may not open this' : 'Something went wrong'),
      errorList(err),
      h('p', {}, h('a', { href: '#/' }, 'Back to your dashboards'))));
  }
}

async function afterSignIn(user) {
  const who = await whoAmI();
  me = who ? { ...who.user, via: who.via } : user;
  showUser();
  const target = wanted && wanted !== '#/signin' ? wanted : '#/';
  wanted = null;
  navigate(target);
}

async function start() {
  whenSignedOut(() => {
    if (!me) return;
    me = null;
    showUser();
    wanted = location.hash;
    signInPage(root, afterSignIn, 'Your session has ended; sign in again.');
  });
  document.getElementById('sign-out').addEventListener('click', async () => {
    await signOut().catch(() => {});
    me = null;
    showUser();
    navigate('#/');
  });
  // A sign-in link: use the token once and drop it from the address bar and history.
  const link = /^#token=(.+)$/.exec(location.hash);
  if (link) {
    history.replaceState(null, '', location.pathname + '#/');
    try {
      await signIn(decodeURIComponent(link[1]));
    } catch (err) {
      showUser();
      signInPage(root, afterSignIn, 'That sign-in link is not valid any more; paste a token.');
      return;
    }
  }
  const who = await whoAmI().catch(() => null);
  if (who) me = { ...who.user, via: who.via };
  showUser();
  window.addEventListener('hashchange', route);
  route();
}

start();
