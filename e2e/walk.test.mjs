// A person's walk through outlook-inbox in demo mode, in headless Chromium from
// Debian's packages, at a phone and a desktop width. It fails on any console
// error, any 4xx/5xx page or asset, a missing element, or a serious or
// critical accessibility violation (axe-core). Screenshots of every step go to
// target/screenshots/.
//
//   npm --prefix e2e ci && npm --prefix e2e test
//
// The app binary is built by `cargo build` first (OUTLOOK_INBOX_BIN overrides it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const shots = join(root, 'target', 'screenshots');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const binary = process.env.OUTLOOK_INBOX_BIN || join(root, 'target', 'debug', 'outlook-inbox');

let app;
let base;
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

before(async () => {
  assert.ok(existsSync(binary), `the app binary is missing at ${binary}: run \`cargo build\` first`);
  assert.ok(existsSync(chromiumPath), `Chromium is missing at ${chromiumPath}: apt-get install -y chromium`);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  // A clean demo-mode environment: no registration, and a working directory
  // with no .env above it (the app reads .env from the directory it starts in).
  const env = { PATH: process.env.PATH, BIND: `127.0.0.1:${port}`, PUBLIC_URL: base, RUST_LOG: 'warn' };
  const cwd = mkdtempSync(join(tmpdir(), 'outlook-inbox-e2e-'));
  app = spawn(binary, [], { env, cwd, stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await fetch(`${base}/healthz`)).status, 200, 'the app did not start');
  mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
});

after(async () => {
  await browser?.close();
  app?.kill();
});

/**
 * Watches a page (and its frames) for console errors, dialogs, failing
 * responses other than the ones a step expects, and requests to the demo's
 * tracking pixel.
 */
function watch(page, expectedStatus) {
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // Chromium reports every 4xx page as a console error; an expected one is not a problem.
    const status = expectedStatus.get(msg.location().url);
    if (status && msg.text().includes(`status of ${status}`)) return;
    problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', async (dialog) => {
    problems.push(`a dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on('request', (req) => {
    if (req.url().includes('/_demo/tracker/') && !expectedStatus.trackerAllowed) {
      problems.push(`a request reached the tracker: ${req.url()}`);
    }
  });
  page.on('response', (res) => {
    if (res.status() >= 400 && expectedStatus.get(res.url()) !== res.status()) {
      problems.push(`${res.status()} for ${res.url()}`);
    }
  });
  page.on('requestfailed', (req) => {
    // Leaving a page closes its live Inbox stream: that abort is expected.
    if (req.url().includes('/mail/events') && req.failure()?.errorText === 'net::ERR_ABORTED') return;
    problems.push(`request failed: ${req.url()} (${req.failure()?.errorText})`);
  });
  return problems;
}

/** Runs axe-core in the page; fails on serious or critical violations. */
async function accessible(page, step) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
    [],
    `accessibility violations on "${step}"`,
  );
}

async function walk(width, height, label) {
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const expected = new Map();
  const problems = watch(page, expected);
  let n = 0;
  const step = async (name) => {
    n += 1;
    await accessible(page, name);
    await page.screenshot({ path: join(shots, `${label}-${String(n).padStart(2, '0')}-${name}.png`), fullPage: true });
    assert.deepEqual(problems, [], `problems by "${name}"`);
  };

  await page.goto(`${base}/`);
  await page.getByText('Demo mode.').waitFor();
  await page.getByRole('heading', { level: 1 }).waitFor();
  await step('home');

  await page.getByRole('link', { name: 'Sign in with Microsoft' }).click();
  await page.getByRole('heading', { name: 'Pick an account' }).waitFor();
  await step('demo-sign-in');

  await page.getByRole('button', { name: /Adele Vance/ }).click();
  await page.waitForURL(`${base}/mail`);
  const rows = page.locator('table.messages tbody tr');
  assert.equal(await rows.count(), 10, 'the Inbox shows ten rows');
  const times = await page.locator('table.messages tbody time').evaluateAll((ts) => ts.map((t) => t.getAttribute('datetime')));
  assert.equal(times.length, 10);
  assert.deepEqual([...times].sort().reverse(), times, 'newest first');
  // The newest demo message is minutes old (Yesterday only just after midnight).
  assert.match(await rows.first().innerText(), /(Today|Yesterday) \d\d:\d\d/);
  await page.getByText('Times are in your time zone.').waitFor();
  assert.ok(await page.locator('table.messages tbody tr.unread').count() > 0, 'unread rows are marked');
  await step('inbox');

  // The live Inbox: someone sends a message; it appears at the top by itself,
  // and is announced to screen readers.
  await page.getByText('Demo: see the live Inbox at work').click();
  await page.getByRole('button', { name: 'Have someone send me a message' }).click();
  await page.waitForURL(`${base}/mail`);
  const before = await rows.first().innerText();
  await page.locator('#live-status').filter({ hasText: /^New message from / }).waitFor({ timeout: 15000 });
  const announced = await page.locator('#live-status').innerText();
  const arrived = page.locator('table.messages tbody tr.arrived').first();
  await arrived.waitFor();
  assert.notEqual(await rows.first().innerText(), before, 'the new row is not at the top');
  assert.ok(announced.endsWith(await arrived.locator('td.subject .text').innerText()), `announced: ${announced}`);
  assert.equal(await rows.count(), 10, 'the Inbox still shows ten rows');
  assert.equal(await page.locator('#live-status').getAttribute('aria-live'), 'polite');
  await step('inbox-live');

  // Search, and a search that finds nothing.
  await page.getByLabel('Search your mail').fill('budget');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await page.waitForURL(/\/mail\?q=budget$/);
  await page.getByRole('heading', { name: 'Search', exact: true }).waitFor();
  await page.getByRole('link', { name: /Q4 budget review/ }).first().waitFor();
  await step('search');
  await page.getByLabel('Search your mail').fill('zzzz-nothing-like-it');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await page.getByRole('heading', { name: 'No messages match “zzzz-nothing-like-it”' }).waitFor();
  await step('search-empty');
  await page.goto(`${base}/mail`);

  // Older mail, and back.
  await page.getByRole('link', { name: 'Older →' }).click();
  await page.waitForURL(`${base}/mail?page=2`);
  assert.equal(await rows.count(), 10, 'page 2 shows ten rows');
  await page.getByRole('heading', { name: /Inbox page 2/ }).waitFor();
  await step('inbox-page-2');
  await page.getByRole('link', { name: '← Newer' }).click();
  await page.waitForURL(`${base}/mail`);
  assert.equal(await rows.count(), 10);

  // A newsletter: the body in its sandboxed frame, remote images held back.
  await page.locator('a[href="/mail/AAMkAD0001"]').click();
  await page.waitForURL(`${base}/mail/AAMkAD0001`);
  await page.getByRole('heading', { name: 'Your weekly digest' }).waitFor();
  const frame = page.frameLocator('iframe.body-frame');
  await frame.getByText('New office opens in Lisbon').waitFor();
  assert.equal(await frame.locator('img[src*="/_demo/images/"]').count(), 0, 'a remote image loaded unasked');
  await page.locator('iframe.body-frame').scrollIntoViewIfNeeded();
  await step('message');

  // Asked for, remote images load (the tracker with them: that is what showing images means).
  expected.trackerAllowed = true;
  await page.getByRole('link', { name: 'Show remote images' }).click();
  await page.waitForURL(`${base}/mail/AAMkAD0001?images=1`);
  await frame.locator('img[src*="/_demo/images/hero.svg"]').waitFor();
  const heroWidth = await frame.locator('img[src*="/_demo/images/hero.svg"]').evaluate((img) => img.naturalWidth);
  assert.ok(heroWidth > 0, 'the remote image did not load');
  await step('message-images');
  expected.trackerAllowed = false;

  // Inline images are part of the message: shown, from data: URIs.
  await page.goto(`${base}/mail/AAMkAD0007`);
  const photo = frame.locator('img[alt="Team photo (an inline attachment)"]');
  await photo.waitFor();
  assert.match(await photo.getAttribute('src'), /^data:image\/png;base64,/);
  // The frame is sandboxed (no same-origin): ask inside it.
  let photoWidth = 0;
  for (let i = 0; i < 50 && photoWidth !== 320; i++) {
    photoWidth = await photo.evaluate((img) => (img.complete ? img.naturalWidth : 0));
    if (photoWidth !== 320) await page.waitForTimeout(100);
  }
  assert.equal(photoWidth, 320, 'the inline image did not load');
  await page.locator('iframe.body-frame').scrollIntoViewIfNeeded();
  await step('message-inline-images');

  // An attachment downloads, saved under its own name, with safe headers.
  await page.goto(`${base}/mail/AAMkAD0000`);
  const link = page.getByRole('link', { name: 'Q4-budget.xlsx' });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  assert.equal(download.suggestedFilename(), 'Q4-budget.xlsx');
  const saved = join(shots, `${label}-download.xlsx`);
  await download.saveAs(saved);
  assert.equal(readFileSync(saved).length, 48213);
  const headers = (await page.request.get(`${base}/mail/AAMkAD0000/attachments/ATT1`)).headers();
  assert.equal(headers['content-disposition'], "attachment; filename=\"Q4-budget.xlsx\"; filename*=UTF-8''Q4-budget.xlsx");
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['content-security-policy'], 'sandbox');
  assert.equal(headers['cache-control'], 'private, no-store');
  await step('message-attachments');

  // The hostile message: nothing runs, nothing leaves.
  await page.goto(`${base}/mail`);
  await page.locator('a[href="/mail/AAMkAD0003"]').click();
  await page.waitForURL(`${base}/mail/AAMkAD0003`);
  await frame.getByText('the quarterly numbers are below').waitFor();
  await page.getByText('invoice.pdf.exe').waitFor();
  assert.equal(await frame.locator('script, iframe, form, object, svg, base, meta[http-equiv]').count(), 0);
  await page.waitForTimeout(300);
  await page.locator('iframe.body-frame').scrollIntoViewIfNeeded();
  await step('message-hostile');

  // An error page and the 404 page, with the same checks.
  expected.set(`${base}/mail?page=99`, 400);
  await page.goto(`${base}/mail?page=99`);
  await page.getByRole('heading', { name: 'There is no such page of your Inbox' }).waitFor();
  await step('error-page');
  expected.set(`${base}/no/such/page`, 404);
  await page.goto(`${base}/no/such/page`);
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  await step('not-found');
  await page.goto(`${base}/mail`);

  await page.getByRole('link', { name: 'outlook-inbox' }).click();
  await page.getByRole('heading', { name: 'Adele Vance' }).waitFor();
  await page.getByText('Retail Manager').waitFor();
  await step('home-signed-in');

  // The whole card loop: send → Inbox → card → Approve → recorded → refreshed.
  await page.getByRole('button', { name: 'Send me a test expense card' }).click();
  await page.getByRole('heading', { name: 'Your test expense card is on its way' }).waitFor();
  const expense = (await page.locator('main strong').first().innerText()).trim();
  assert.match(expense, /^EXP-\d{4}-\d{6}$/);
  await step('card-sent');
  await page.getByRole('link', { name: 'Open your Inbox' }).click();
  await page.getByRole('link', { name: `Expense ${expense} is waiting for your decision` }).click();
  await page.getByRole('link', { name: 'Open this card as Outlook would' }).click();
  await page.getByRole('heading', { name: `Expense report ${expense}` }).waitFor();
  await step('actions-card');

  await page.getByRole('button', { name: 'Approve', exact: true }).click();
  await page.locator('#action-status').waitFor();
  assert.equal((await page.locator('#action-status').innerText()).trim(), '200 OK');
  assert.equal((await page.locator('#card-action-status').innerText()).trim(), 'The expense was approved.');
  await page.locator('#card-refreshed').waitFor();
  assert.match(await page.locator('#card-decision').innerText(), /^Approved by AdeleV@contoso\.com on /);
  assert.equal(await page.getByRole('button', { name: 'Approve', exact: true }).count(), 0, 'the refreshed card has no buttons');
  await step('actions-approved');

  // Reject on the card as it arrived: 409, and the decision stands.
  expected.set(`${base}/_demo/actions`, 200);
  await page.getByRole('button', { name: 'Reject on the original card' }).click();
  await page.locator('#action-status').waitFor();
  assert.equal((await page.locator('#action-status').innerText()).trim(), '409 Conflict');
  assert.equal((await page.locator('#card-action-status').innerText()).trim(), 'This expense was already approved.');
  assert.match(await page.locator('#card-decision').innerText(), /^Approved by AdeleV@contoso\.com on /);
  await step('actions-conflict');

  await page.getByRole('link', { name: 'Sign out' }).first().click();
  await page.waitForURL(`${base}/`);
  await page.getByRole('link', { name: 'Sign in with Microsoft' }).waitFor();
  await step('signed-out');

  await context.close();
}

test('a person walks through the app on a phone (375×812)', async () => {
  await walk(375, 812, 'phone');
});

test('a person walks through the app on a desktop (1280×800)', async () => {
  await walk(1280, 800, 'desktop');
});
