// The web app in headless Chromium: sign in, build a panel, see a chart with
// data drawn, save the dashboard, reload, share it with a second user who
// then sees it, check a third user is refused, and that one opens the
// statflow health dashboard and sees its chart drawn. Run by tests/browser.rs,
// which starts statflow and passes:
//   STATFLOW_URL, ADMIN_TOKEN, BOB_TOKEN, CAT_TOKEN, ARTIFACTS (a folder for screenshots)
// Chromium is Debian's /usr/bin/chromium (or CHROMIUM); nothing is downloaded.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const base = process.env.STATFLOW_URL;
const artifacts = process.env.ARTIFACTS || 'target/browser-artifacts';
const tokens = { admin: process.env.ADMIN_TOKEN, bob: process.env.BOB_TOKEN, cat: process.env.CAT_TOKEN };
assert.ok(base && tokens.admin && tokens.bob && tokens.cat, 'STATFLOW_URL and the three tokens are needed');
mkdirSync(artifacts, { recursive: true });

let failed = false;
const step = (name) => console.log(`- ${name}`);
const profiles = [];
const contexts = [];

/** A browser of its own (a fresh --user-data-dir, so its own cookies) whose page reports errors. */
async function person(name) {
  const profile = mkdtempSync(join(tmpdir(), `statflow-chromium-${name}-`));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  contexts.push(context);
  const page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => { console.error(`[${name}] page error: ${e.message}`); failed = true; });
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) console.error(`[${name}] console: ${m.text()}`); });
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Pixels of a panel's canvas that are not background: proof something was drawn. */
async function inkOf(page, selector) {
  return page.$eval(selector, (el) => {
    const canvas = el.querySelector('canvas');
    if (!canvas) return 0;
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let ink = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
      // Coloured, opaque pixels: series lines and fills, not grey axes or grid.
      if (a > 200 && Math.max(r, g, b) - Math.min(r, g, b) > 60) ink++;
    }
    return ink;
  });
}

try {
  // 1. The admin signs in with the link statflow printed; the token leaves the address bar.
  const admin = await person('admin');
  const queries = [];
  admin.page.on('response', async (r) => {
    if (r.url().endsWith('/v1/query') && r.request().method() === 'POST') {
      try { queries.push({ body: JSON.parse(r.request().postData() || '{}'), status: r.status(), answer: await r.json() }); } catch { /* ignore */ }
    }
  });
  step('admin signs in with the sign-in link');
  await admin.page.goto(`${base}/#token=${tokens.admin}`);
  await admin.page.waitForSelector('h1:text("Dashboards")');
  assert.ok(!admin.page.url().includes(tokens.admin), 'the token is dropped from the URL');
  await shot(admin.page, '01-dashboards-empty');

  // 2. A new dashboard with a time-series panel grouped by reward type.
  step('admin builds a time-series panel');
  await admin.page.click('a[name="new-dashboard"]');
  await admin.page.waitForSelector('button[name="add-panel"]');
  await admin.page.click('button[name="add-panel"]');
  const dialog = admin.page.locator('.dialog');
  await dialog.locator('select[name="metric"]').selectOption('reward_stats');
  await dialog.locator('input[name="group"][value="reward_type"]').check();
  await dialog.locator('input[name="title"]').fill('Rewards by type');
  await dialog.locator('input[name="title"]').dispatchEvent('change');
  await admin.page.waitForSelector('.preview[data-state="ok"]', { timeout: 30000 });
  await shot(admin.page, '02-panel-editor');

  // A bad regex shows the server's message with its field path, then is removed.
  step('a malformed filter shows the server\'s error with its path');
  await dialog.locator('button:text("+ Filter")').click();
  await dialog.locator('select[name="filter-dimension"]').selectOption('seed_id');
  await dialog.locator('select[aria-label="Filter operator"]').selectOption('regex');
  await dialog.locator('input[name="filter-value"]').fill('(unclosed');
  await dialog.locator('input[name="filter-value"]').press('Enter');
  await admin.page.waitForSelector('.preview[data-state="error"]');
  const errorText = await admin.page.textContent('.preview');
  assert.match(errorText, /filters\.seed_id/, 'the error names the field');
  assert.match(errorText, /bad_regex/);
  await shot(admin.page, '03-validation-error');
  await dialog.locator('.filter button:text("remove")').last().click();
  await admin.page.waitForSelector('.preview[data-state="ok"]');
  await dialog.locator('button[name="apply-panel"]').click();

  step('admin adds a big number panel');
  await admin.page.click('button[name="add-panel"]');
  await dialog.locator('select[name="type"]').selectOption('number');
  await dialog.locator('input[name="measure"][value="players"]').check();
  await admin.page.waitForSelector('.preview[data-state="ok"]', { timeout: 30000 });
  await dialog.locator('button[name="apply-panel"]').click();

  step('the chart has data drawn');
  const chart = '#panels .panel[data-type="lines"] .panel-body';
  await admin.page.waitForSelector(`${chart}[data-state="ok"] canvas`, { timeout: 30000 });
  const points = Number(await admin.page.getAttribute(chart, 'data-points'));
  const series = Number(await admin.page.getAttribute(chart, 'data-series'));
  assert.ok(points > 0, `points drawn: ${points}`);
  assert.ok(series >= 2, `a series per reward type: ${series}`);
  assert.ok((await inkOf(admin.page, chart)) > 200, 'the canvas has coloured pixels');
  assert.ok(await admin.page.isVisible('.u-legend'), 'a legend');
  step('hovering the chart shows a tooltip with the values there');
  const over = await admin.page.locator(`${chart} .u-over`).boundingBox();
  await admin.page.mouse.move(over.x + over.width - 5, over.y + over.height / 2);
  await admin.page.waitForSelector(`${chart} .tooltip:not([hidden])`);
  assert.match(await admin.page.textContent(`${chart} .tooltip`), /reward_type=\w+: \d/);
  await shot(admin.page, '03b-tooltip');

  // 3. Save with a title; the address becomes the dashboard's link.
  step('admin saves the dashboard');
  await admin.page.fill('input[name="dashboard-title"]', 'Rewards live');
  await admin.page.dispatchEvent('input[name="dashboard-title"]', 'change');
  await admin.page.click('button[name="save"]');
  await admin.page.waitForURL(/#\/d\/[0-9a-f]+$/);
  const link = admin.page.url();
  await admin.page.waitForSelector(`${chart}[data-state="ok"]`, { timeout: 30000 });
  await admin.page.waitForSelector('.panel[data-type="number"] .panel-body[data-state="ok"]');

  // One refresh reads one epoch: the second panel is pinned to the first's answer.
  step('all panels of one refresh read the same epoch');
  await admin.page.waitForLoadState('networkidle');
  queries.length = 0;
  await admin.page.click('button[name="refresh-now"]');
  // The refresh's first query names no epoch; the second names the first's answer's.
  let first;
  let second;
  for (const deadline = Date.now() + 20000; Date.now() < deadline && !second;) {
    first = queries.find((q) => q.body.epoch === undefined);
    second = first && queries.find((q) => q.body.epoch !== undefined && q.body.epoch === first.answer.as_of.epoch);
    if (!second) await admin.page.waitForTimeout(100);
  }
  assert.ok(first, 'the first panel asks for the newest epoch');
  assert.ok(second, `the second panel is pinned to the first answer's epoch: ${JSON.stringify(queries.map((q) => [q.body.epoch, q.answer.as_of && q.answer.as_of.epoch]))}`);
  assert.equal(second.status, 200);
  assert.equal(second.answer.as_of.epoch, first.answer.as_of.epoch, 'and is read at exactly that epoch');
  await shot(admin.page, '04-dashboard-saved');

  // Live: the server says when a newer epoch is complete, and the panels follow.
  step('a live dashboard refreshes as epochs complete');
  const before = Number(await admin.page.getAttribute('#panels', 'data-epoch'));
  await admin.page.selectOption('select[name="refresh"]', '-1');
  await admin.page.waitForFunction((e) => Number(document.querySelector('#panels').dataset.epoch) > e, before, { timeout: 20000 });
  await admin.page.selectOption('select[name="refresh"]', '300');

  // 4. Reload: still signed in (the session cookie), the dashboard comes back.
  step('reloading keeps the session and the dashboard');
  await admin.page.reload();
  await admin.page.waitForSelector(`${chart}[data-state="ok"] canvas`, { timeout: 30000 });
  assert.equal(await admin.page.inputValue('input[name="dashboard-title"]'), 'Rewards live');
  const cookies = await admin.context.cookies();
  const session = cookies.find((c) => c.name === 'statflow_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict session cookie');
  assert.equal(await admin.page.evaluate(() => document.cookie), '', 'scripts cannot read the cookie');

  // 5. Share with bob (view); bob opens the link, signs in, and sees it.
  step('admin shares it with bob');
  await admin.page.click('button[name="share"]');
  await admin.page.fill('input[name="share-user"]', 'bob');
  await admin.page.click('button[name="add-share"]');
  await shot(admin.page, '05-sharing');
  await admin.page.click('button[name="save-sharing"]');
  await admin.page.waitForSelector('.dialog', { state: 'detached' });

  step('bob opens the link, signs in and sees the dashboard');
  const bob = await person('bob');
  await bob.page.goto(link);
  await bob.page.waitForSelector('input[name="token"]');
  await shot(bob.page, '06-sign-in');
  await bob.page.fill('input[name="token"]', tokens.bob);
  await bob.page.click('button[name="sign-in"]');
  await bob.page.waitForSelector(`${chart}[data-state="ok"] canvas`, { timeout: 30000 });
  assert.ok(Number(await bob.page.getAttribute(chart, 'data-points')) > 0);
  assert.ok((await inkOf(bob.page, chart)) > 200);
  assert.equal(await bob.page.$('button[name="save"]'), null, 'a viewer cannot save');
  await shot(bob.page, '07-shared-with-bob');

  // 6. cat (not shared) is refused.
  step('cat is refused');
  const cat = await person('cat');
  await cat.page.goto(`${base}/#token=${tokens.cat}`);
  await cat.page.waitForSelector('h1:text("Dashboards")');
  assert.equal(await cat.page.$(`a[href="${new URL(link).hash}"]`), null, 'not listed for cat');
  await cat.page.goto(link);
  await cat.page.reload();
  await cat.page.waitForSelector('#refused');
  assert.match(await cat.page.textContent('#refused'), /not shared with cat/);
  await shot(cat.page, '08-refused');

  // 7. The statflow health dashboard statflow made from the example's
  // telemetry metric: shared with everyone signed in, so cat opens it too.
  step('cat opens the statflow health dashboard and sees a drawn chart');
  await cat.page.goto(`${base}/#/`);
  await cat.page.click('#dashboards a:text-is("statflow health")');
  const records = '#panels .panel[data-panel="records"] .panel-body';
  await cat.page.waitForSelector(`${records}[data-state="ok"] canvas`, { timeout: 30000 });
  assert.ok(Number(await cat.page.getAttribute(records, 'data-points')) > 0, 'records drawn');
  // statflow has watched itself for less than a minute: its first 1-minute
  // bucket is a lone point, and a line needs a second one. The dashboard
  // refreshes every 10 s, so wait for the next minute's bucket.
  const drawnBy = Date.now() + 90000;
  while ((await inkOf(cat.page, records)) <= 200 && Date.now() < drawnBy) {
    await cat.page.waitForTimeout(2000);
  }
  assert.ok((await inkOf(cat.page, records)) > 200, 'the records chart has coloured pixels');
  assert.equal(await cat.page.$('#panels .panel-body[data-state="error"]'), null, 'no panel is refused');
  assert.equal(await cat.page.$('button[name="save"]'), null, 'a viewer cannot change it');
  assert.ok(await cat.page.isVisible('#builtin-note'), 'it says statflow made it');
  await shot(cat.page, '10-statflow-health');

  step('the admin adds a user in the Users page and sees its token once');
  await admin.page.goto(`${base}/#/users`);
  await admin.page.fill('input[name="new-user"]', 'dan@example.org');
  await admin.page.selectOption('select[name="new-role"]', 'editor');
  await admin.page.click('button[name="add-user"]');
  await admin.page.waitForSelector('.token-value');
  assert.match(await admin.page.textContent('.token-value'), /^sf_[0-9a-f]{16}_[0-9a-f]{64}$/);
  assert.match(await admin.page.textContent('#users'), /dan@example\.org\s*editor/);
  admin.page.once('dialog', (d) => d.accept());
  await admin.page.click('#users tr:has-text("dan@example.org") button:text("remove")');
  await admin.page.waitForFunction(() => !document.querySelector('#users').textContent.includes('dan@example.org'));

  step('the status page shows sources, workers and the watermark');
  await admin.page.goto(`${base}/#/status`);
  await admin.page.waitForSelector('#sources tbody tr');
  assert.match(await admin.page.textContent('#sources'), /events/);
  await shot(admin.page, '09-status');
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
}
console.log(failed ? 'browser test FAILED' : 'browser test passed');
process.exit(failed ? 1 : 0);
