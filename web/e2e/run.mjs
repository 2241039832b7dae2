#!/usr/bin/env node
// Browser tests of the web console against a running corrald: headless Debian chromium driven
// by playwright-core. One line per check (PASS/FAIL), a PNG of every page visited in --out,
// exit code 0 only when every check passed. Every wait is bounded and waits for a condition,
// never for a fixed time.
//
//   node web/e2e/run.mjs --url https://127.0.0.1:PORT --user admin --password PW --out DIR \
//     --scenario basic   --vm NAME --user2 U --password2 P --hidden-vm OTHER
//     --scenario migrate --vm NAME [--to HOST]
//     --scenario load    --runs N
//     --scenario console --vm NAME
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string' },
    user: { type: 'string', default: 'admin' },
    password: { type: 'string' },
    scenario: { type: 'string' },
    out: { type: 'string', default: 'e2e-out' },
    vm: { type: 'string' },
    user2: { type: 'string' },
    password2: { type: 'string' },
    'hidden-vm': { type: 'string' },
    to: { type: 'string' },
    runs: { type: 'string', default: '10' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});

function usage(msg) {
  console.error(`e2e: ${msg}`);
  console.error('usage: node web/e2e/run.mjs --url URL --user U --password P --scenario basic|migrate|load|console --out DIR [...]');
  process.exit(2);
}
if (!opt.url) usage('--url is required');
if (opt.password === undefined) usage('--password is required');
const base = opt.url.replace(/\/+$/, '');
const T = Number(opt.timeout); // the bound of every single wait, in ms
mkdirSync(opt.out, { recursive: true });

// ------------------------------------------------------------------ checks and screenshots

let failures = 0;
let checks = 0;
function check(name, ok, detail = '') {
  checks++;
  if (!ok) failures++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}

let shots = 0;
async function shot(page, name) {
  const file = join(opt.out, `${String(++shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`     screenshot ${file}`);
}

/** Runs one step; an exception (a wait that timed out) is a failed check, not a crash. */
async function step(page, name, fn) {
  try {
    const detail = await fn();
    return check(name, true, typeof detail === 'string' ? detail : '');
  } catch (e) {
    check(name, false, String(e.message || e).split('\n')[0]);
    if (page) await shot(page, `failed-${name.replace(/[^a-z0-9]+/gi, '-')}`).catch(() => {});
    return false;
  }
}

/** A size as the console writes it (format.js's mib). */
const mibText = (n) => (n >= 1024 ? `${+(n / 1024).toFixed(1)} GiB` : `${n} MiB`);
const tid = (id) => `[data-testid="${id}"]`;
const go = (page, path) => page.goto(`${base}/#${path}`, { waitUntil: 'domcontentloaded', timeout: T });

async function login(page, user, password) {
  await go(page, '/login');
  try {
    await page.waitForSelector(tid('login-form'), { timeout: T });
  } catch {
    const body = (await page.textContent('body').catch(() => '')).trim().slice(0, 300);
    throw new Error(`no login page at ${base}${body ? `; it says: ${body}` : ''}`);
  }
  await page.fill(tid('login-user'), user, { timeout: T });
  await page.fill(tid('login-password'), password);
  await page.click(tid('login-submit'));
  const which = await Promise.race([
    page.waitForSelector(tid('nav-dashboard'), { timeout: T }).then(() => 'in'),
    page.waitForSelector(tid('login-error'), { timeout: T }).then(() => 'error'),
  ]);
  if (which === 'error') throw new Error(`login refused: ${await page.textContent(tid('login-error'))}`);
  return `as ${user}`;
}

/** The text of an error box on the page, if one shows (to say why a wait failed). */
async function pageError(page) {
  const boxes = await page.$$eval('[role="alert"]', (els) => els.map((e) => e.textContent.trim()).filter(Boolean));
  return boxes.join(' | ');
}

async function waitOrExplain(page, selector, timeout, what) {
  try {
    await page.waitForSelector(selector, { timeout });
  } catch {
    const err = await pageError(page);
    throw new Error(`${what} within ${timeout} ms${err ? `; the page says: ${err}` : ''}`);
  }
}

// ------------------------------------------------------------------ scenarios

async function basic(page) {
  const vm = opt.vm || usage('basic needs --vm');
  const user2 = opt.user2 || usage('basic needs --user2');
  const hidden = opt['hidden-vm'] || usage('basic needs --hidden-vm');

  if (!(await step(page, 'login', () => login(page, opt.user, opt.password)))) return;
  await step(page, 'dashboard renders the VM counts', async () => {
    await waitOrExplain(page, `${tid('vm-counts')}[data-ready="true"]`, T, 'no VM counts');
    await page.waitForSelector(`${tid('dashboard-hosts')} tbody tr`, { timeout: T });
    const total = await page.getAttribute(tid('vm-counts'), 'data-total');
    return `${total} VMs`;
  });
  await shot(page, 'dashboard');

  const created = await step(page, `create and start ${vm} through the New VM form`, async () => {
    await go(page, '/vms');
    await page.click(tid('new-vm'), { timeout: T });
    await page.fill(tid('new-vm-name'), vm, { timeout: T });
    await page.fill(tid('new-vm-memory'), '64');
    await page.fill(tid('new-vm-vcpus'), '1');
    await page.fill(tid('new-vm-disk'), '0');
    await page.check(tid('new-vm-start'));
    await shot(page, 'new-vm-form');
    await page.click(tid('new-vm-submit'));
    await Promise.race([
      page.waitForSelector(tid('vm-list-page'), { timeout: T }),
      page.waitForSelector(tid('vm-page'), { timeout: T }),
      page.waitForSelector(tid('new-vm-error'), { timeout: T }),
    ]);
    const err = await pageError(page);
    if (err) throw new Error(err);
  });
  if (created) await vmSteps(page, vm);
  await otherPages(page, vm);
  await userSteps(page, user2, hidden);
}

/** basic: the new VM up in the list, its page, an edit for the next run. */
async function vmSteps(page, vm) {
  const row = (name) => `${tid('vm-row')}[data-name="${name}"]`;
  const up = await step(page, `${vm} is up in the VM list`, async () => {
    await go(page, '/vms');
    await page.fill(tid('filter-name'), vm, { timeout: T });
    await waitOrExplain(page, `${row(vm)}[data-status="up"]`, T, `${vm} was not up`);
  });
  await shot(page, 'vm-list');
  if (!up) return;

  await step(page, `${vm}'s page`, async () => {
    await page.click(`${row(vm)} ${tid('vm-link')}`);
    await waitOrExplain(page, `${tid('vm-page')}[data-name="${vm}"][data-status="up"]`, T, 'no VM page');
    await page.waitForSelector(tid('vm-details'), { timeout: T });
  });
  await shot(page, 'vm-page');

  await step(page, 'edit for the next run shows the pending marker', async () => {
    await page.click(tid('tab-edit'));
    const memory = Number(await page.inputValue(tid('edit-memory'), { timeout: T }));
    await page.fill(tid('edit-memory'), String(memory * 2));
    await page.check(tid('edit-next-run'));
    await page.click(tid('edit-submit'));
    await Promise.race([
      page.waitForSelector(tid('edit-saved'), { timeout: T }),
      page.waitForSelector(tid('edit-error'), { timeout: T }),
    ]);
    const err = await pageError(page);
    if (err) throw new Error(err);
    await waitOrExplain(page, tid('vm-pending-next-run'), T, 'no pending marker on the VM page');
    await page.click(tid('tab-overview'));
    await page.check(tid('toggle-next-run'));
    await page.waitForSelector(tid('next-run-view'), { timeout: T });
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent.includes(want),
      [`${tid('next-run-view')} [data-field="Memory"]`, mibText(memory * 2)],
      { timeout: T },
    );
    await shot(page, 'vm-next-run');
    await go(page, '/vms');
    await page.fill(tid('filter-name'), vm, { timeout: T });
    await waitOrExplain(page, `${row(vm)} ${tid('pending-next-run')}`, T, 'no pending marker in the VM list');
    return `memory ${memory} -> ${memory * 2} MiB at the next run`;
  });
  await shot(page, 'vm-list-pending');
}

/** basic: hosts, events, users, roles and permissions as the first user. */
async function otherPages(page, vm) {

  let hostName = '';
  await step(page, 'hosts page and a host page', async () => {
    await go(page, '/hosts');
    await waitOrExplain(page, `${tid('host-row')}`, T, 'no hosts listed');
    await shot(page, 'hosts');
    hostName = await page.getAttribute(tid('host-row'), 'data-name');
    await page.click(`${tid('host-row')}[data-name="${hostName}"] ${tid('host-link')}`);
    await waitOrExplain(page, `${tid('host-page')}[data-name="${hostName}"]`, T, 'no host page');
    await page.waitForSelector(tid('host-vms'), { timeout: T });
    return hostName;
  });
  await shot(page, 'host');

  await step(page, `events page shows an event about ${vm}`, async () => {
    await go(page, '/events');
    await page.waitForFunction(
      (name) => [...document.querySelectorAll('[data-testid="event-row"]')].some((r) => r.textContent.includes(name)),
      vm,
      { timeout: T },
    );
    return await page.textContent(tid('events-mode'));
  });
  await shot(page, 'events');

  for (const [path, testid, name] of [
    ['/users', 'user-table', 'users'],
    ['/roles', 'role-table', 'roles'],
    ['/permissions', 'permission-table', 'permissions'],
  ]) {
    await step(page, `${name} page`, async () => {
      await go(page, path);
      await waitOrExplain(page, `${tid(testid)} tbody tr`, T, `no ${name} table`);
      return `${await page.locator(`${tid(testid)} tbody tr`).count()} rows`;
    });
    await shot(page, name);
  }

  await step(page, 'log out', async () => {
    await page.click(tid('logout'));
    await page.waitForSelector(tid('login-form'), { timeout: T });
  });
  await shot(page, 'logged-out');

}

/** basic: the second (UserRole) user sees only their own VMs. */
async function userSteps(page, user2, hidden) {
  if (!(await step(page, `log in as ${user2}`, () => login(page, user2, opt.password2 ?? '')))) return;
  await step(page, `${user2}'s VM list renders without ${hidden}`, async () => {
    await go(page, '/vms');
    await waitOrExplain(page, `${tid('vm-table')}[data-ready="true"]`, T, 'no VM list');
    const names = await page.$$eval(tid('vm-row'), (rows) => rows.map((r) => r.dataset.name));
    if (names.includes(hidden)) throw new Error(`${hidden} is listed for ${user2}`);
    return `sees ${names.length} VMs: ${names.join(', ') || 'none'}`;
  });
  await shot(page, 'user2-vms');
  await step(page, `${user2} cannot open ${hidden}'s page`, async () => {
    await go(page, `/vms/${encodeURIComponent(hidden)}`);
    await waitOrExplain(page, tid('vm-error'), T, 'no refusal shown');
    return await page.textContent(tid('vm-error'));
  });
  await shot(page, 'user2-hidden-vm');
  await step(page, `${user2}'s dashboard`, async () => {
    await go(page, '/');
    await waitOrExplain(page, `${tid('vm-counts')}[data-ready="true"]`, T, 'no VM counts');
  });
  await shot(page, 'user2-dashboard');
}

async function migrate(page) {
  const vm = opt.vm || usage('migrate needs --vm');
  const vmPage = tid('vm-page');
  if (!(await step(page, 'login', () => login(page, opt.user, opt.password)))) return;
  let from = '';
  const ok = await step(page, `${vm}'s page, up`, async () => {
    await go(page, `/vms/${encodeURIComponent(vm)}`);
    await waitOrExplain(page, `${vmPage}[data-name="${vm}"][data-status="up"]`, T, `${vm} is not up`);
    from = await page.getAttribute(vmPage, 'data-host');
    return `on ${from}`;
  });
  if (!ok) return;
  // Sample the progress bar as the page shows it: every value it takes, from before the click.
  await page.evaluate(() => {
    window.__samples = [];
    const seen = () => {
      const bar = document.querySelector('[data-testid="migration-progress"]');
      const v = bar?.dataset.percent;
      if (v !== undefined && v !== window.__samples[window.__samples.length - 1]) window.__samples.push(v);
    };
    new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  const ordered = await step(page, `migrate ${vm}${opt.to ? ` to ${opt.to}` : ' (automatic)'}`, async () => {
    await page.click(tid('vm-migrate'), { timeout: T });
    await page.waitForSelector(tid('migrate-dialog'), { timeout: T });
    if (opt.to) {
      await page.waitForSelector(`${tid('migrate-to')} option[value="${opt.to}"]`, { state: 'attached', timeout: T });
      await page.selectOption(tid('migrate-to'), opt.to);
    }
    await page.click(tid('migrate-dialog-submit'));
    await Promise.race([
      page.waitForSelector(tid('migrate-dialog'), { state: 'detached', timeout: T }),
      page.waitForSelector(tid('migrate-dialog-error'), { timeout: T }),
    ]);
    const err = await pageError(page);
    if (err) throw new Error(err);
  });
  if (!ordered) return;
  await step(page, 'the progress bar shows a value strictly between 0 and 100', async () => {
    await page.waitForFunction(
      () => (window.__samples || []).some((v) => Number(v) > 0 && Number(v) < 100),
      null,
      { timeout: T * 2 },
    );
    await shot(page, 'migration-progress');
    const text = await page.textContent(tid('migration-text')).catch(() => '');
    return text;
  });
  await step(page, `${vm} is up on another host`, async () => {
    await page.waitForFunction(
      ([from]) => {
        const el = document.querySelector('[data-testid="vm-page"]');
        return el && el.dataset.status === 'up' && el.dataset.host && el.dataset.host !== from && !document.querySelector('[data-testid="migration"]');
      },
      [from],
      { timeout: T * 3 },
    );
    const to = await page.getAttribute(vmPage, 'data-host');
    if (opt.to && to !== opt.to) throw new Error(`on ${to}, not ${opt.to}`);
    const samples = await page.evaluate(() => window.__samples);
    return `${from} -> ${to}; progress seen: ${samples.join(' ')}`;
  });
  await shot(page, 'migrated');
}

async function load(page) {
  const runs = Number(opt.runs);
  if (!(await step(page, 'login', () => login(page, opt.user, opt.password)))) return;
  const expected = await page.evaluate(async () => {
    const res = await fetch('/api/v1/vms', { headers: { Authorization: `Bearer ${sessionStorage.getItem('corral.token')}` } });
    return (await res.json()).vms.length;
  });
  console.log(`     the API lists ${expected} VMs`);
  // Interactive: the VM-count tiles are in the DOM with the API's data (data-ready, and the
  // total the API gave), timed by performance.now() — milliseconds since the navigation
  // started — at the first animation frame that finds them.
  const times = [];
  for (let i = 0; i < runs; i++) {
    const ok = await step(page, `dashboard load ${i + 1}/${runs}`, async () => {
      await page.goto('about:blank');
      await page.goto(`${base}/#/`, { waitUntil: 'commit', timeout: T });
      const handle = await page.waitForFunction(
        (want) => {
          const el = document.querySelector('[data-testid="vm-counts"][data-ready="true"]');
          return el && Number(el.dataset.total) === want ? performance.now() : false;
        },
        expected,
        { polling: 'raf', timeout: T },
      );
      const ms = await handle.jsonValue();
      times.push(ms);
      return `${ms.toFixed(0)} ms`;
    });
    if (!ok) break;
  }
  await shot(page, 'dashboard-loaded');
  if (times.length === 0) return;
  const sorted = [...times].sort((a, b) => a - b);
  const p50 = sorted[Math.floor((sorted.length - 1) / 2)];
  const r = (x) => Math.round(x);
  console.log(`dashboard_ms p50=${r(p50)} min=${r(sorted[0])} max=${r(sorted[sorted.length - 1])}`);
  console.log(
    JSON.stringify({
      dashboard_ms_p50: r(p50),
      dashboard_ms_min: r(sorted[0]),
      dashboard_ms_max: r(sorted[sorted.length - 1]),
      runs: times.length,
      vms: expected,
    }),
  );
}

async function consoleScenario(page) {
  const vm = opt.vm || usage('console needs --vm');
  if (!(await step(page, 'login', () => login(page, opt.user, opt.password)))) return;
  await step(page, `${vm}'s serial console shows output`, async () => {
    await go(page, `/vms/${encodeURIComponent(vm)}`);
    await waitOrExplain(page, `${tid('vm-page')}[data-name="${vm}"]`, T, 'no VM page');
    await page.click(tid('tab-console'));
    await page.click(tid('open-serial'), { timeout: T });
    try {
      await page.waitForFunction(
        () => /connected/.test(document.querySelector('[data-testid="serial-state"]')?.textContent || ''),
        null,
        { timeout: T },
      );
    } catch {
      const state = await page.textContent(tid('serial-state')).catch(() => '');
      throw new Error(`not connected within ${T} ms: ${state} ${await pageError(page)}`.trim());
    }
    await page.click(tid('serial-screen'));
    await page.keyboard.press('Enter');
    await page.waitForFunction(
      () => Number(document.querySelector('[data-testid="serial-screen"]')?.dataset.bytes || 0) > 0,
      null,
      { timeout: T },
    );
    return `${await page.getAttribute(tid('serial-screen'), 'data-bytes')} bytes`;
  });
  await shot(page, 'serial-console');
}

// ------------------------------------------------------------------ main

const SCENARIOS = { basic, migrate, load, console: consoleScenario };
const scenario = SCENARIOS[opt.scenario];
if (!scenario) usage(`unknown scenario ${opt.scenario}; one of ${Object.keys(SCENARIOS).join(', ')}`);

const browser = await chromium.launch({
  executablePath: opt.chromium,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  timeout: T,
});
const pageErrors = [];
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1360, height: 900 } });
  context.setDefaultTimeout(T);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e.message || e)));
  await scenario(page);
  check('no script errors in the page', pageErrors.length === 0, pageErrors.slice(0, 3).join(' | '));
} catch (e) {
  check(`scenario ${opt.scenario}`, false, String(e.message || e).split('\n')[0]);
} finally {
  await browser.close();
}
console.log(`${checks - failures} of ${checks} checks passed`);
process.exit(failures === 0 && checks > 0 ? 0 : 1);
