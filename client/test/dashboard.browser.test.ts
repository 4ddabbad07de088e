// The dashboard end to end in a real browser: Debian's chromium driven by playwright-core, against
// the real API under wrangler dev (which serves api/public as the Worker's static assets), a real
// CPU runner that trains a tiny job, and a real webhook receiver on loopback. Sign in, open the
// job, see a chart with points, open a rollout with a critique, redeliver a delivery. With
// CGRPO_SCREENSHOTS=1 it writes the screenshots in docs/ (dashboard and `cgrpo jobs follow`).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  type LocalApi,
  ROOT,
  registerRunner,
  startApi,
  startRunner,
  stopRunners,
  tinyJob,
  waitFor,
} from '../../gpu-runner/test/harness';

const CHROMIUM = '/usr/bin/chromium';
/** Evaluated in the page: the reward chart has drawn the 4 steps of the tiny job. */
const CHART_HAS_4_POINTS = `Number(document.querySelector('figure[data-chart="Reward"]')?.getAttribute('data-points')) >= 4`;
/** Screenshots go to docs/ only when asked (CGRPO_SCREENSHOTS=1), so a test run leaves the tree clean. */
const DOCS = process.env.CGRPO_SCREENSHOTS ? join(ROOT, 'docs') : mkdtempSync(join(tmpdir(), 'cgrpo-shots-'));
let api: LocalApi;
let browser: BrowserContext;
let receiver: Server;
let received = 0;
let jobId: string;
let endpointId: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)`);
  const port = await freePort();
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
  api = await startApi();
  const ep = await api.request<{ id: string }>('POST', '/v1/webhooks/endpoints', {
    url: `http://127.0.0.1:${port}/hook`,
  });
  expect(ep.status, JSON.stringify(ep.body)).toBe(201);
  endpointId = ep.body.id;
  const created = await api.request<{ id: string }>('POST', '/v1/jobs', tinyJob({ name: 'dashboard-e2e' }));
  expect(created.status).toBe(201);
  jobId = created.body.id;
  const { token } = registerRunner(api, 'dashboard-e2e');
  const runner = startRunner(api, token, { exitAfter: 1 });
  expect(await runner.exited).toBe(0);
  stopRunners(false);
  browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'cgrpo-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 900 },
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  stopRunners(false);
  await api?.stop();
  receiver?.close();
});

describe('dashboard in chromium', () => {
  it('signs in, shows a live chart with points, a rollout with its critique, and redelivers a webhook', async () => {
    const page = await browser.newPage();
    page.setDefaultNavigationTimeout(90_000);
    page.setDefaultTimeout(30_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    await page.goto(`${api.url}/`);
    await page.getByLabel('API key').fill('cgrpo_sk_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectVisible(page.getByRole('alert').filter({ hasText: 'Sign-in failed' }));
    await page.getByLabel('API key').fill(api.apiKey);
    await page.keyboard.press('Enter');
    const link = page.getByRole('link', { name: /dashboard-e2e/ });
    await link.waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('cgrpo.apiKey'))).toBe(api.apiKey);
    await page.screenshot({ path: join(DOCS, 'dashboard-jobs.png') });

    await link.click();
    const reward = page.locator('figure[data-chart="Reward"]');
    await page.waitForFunction(CHART_HAS_4_POINTS);
    expect(Number(await reward.getAttribute('data-points'))).toBe(4);
    expect(await reward.locator('canvas').count()).toBe(1);
    await page.screenshot({ path: join(DOCS, 'dashboard-job.png'), fullPage: true });

    await page.getByRole('tab', { name: 'Rollouts' }).click();
    await page.getByLabel('Step', { exact: true }).selectOption('1');
    await page.getByLabel('Kind', { exact: true }).selectOption('initial');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('#rollout-list[data-loaded="1:initial"]').waitFor();
    // a row whose critique column says yes, opened with the keyboard
    const row = page
      .locator('tr.clickable', { has: page.locator('td:nth-child(5)', { hasText: 'yes' }) })
      .first();
    await row.focus();
    await page.keyboard.press('Enter');
    const critique = page.locator('#rollout-detail section.critique pre');
    await critique.waitFor();
    expect((await critique.textContent())?.trim().length).toBeGreaterThan(3);
    expect(await critique.textContent()).not.toBe('–');
    await page.screenshot({ path: join(DOCS, 'dashboard-rollout.png'), fullPage: true });

    // Deliveries go out through the Queue; the cron (run here on demand) re-enqueues late ones.
    await waitFor(
      'a webhook delivery to be delivered',
      async () => {
        await api.cron();
        const d = await api.request<{ data: { status: string }[] }>(
          'GET',
          `/v1/webhooks/endpoints/${endpointId}/deliveries`,
        );
        return d.body.data.some((x) => x.status === 'delivered');
      },
      120_000,
      2000,
    );
    const before = received;
    await page.goto(`${api.url}/#/webhooks?endpoint=${endpointId}`);
    const delivered = page.locator('tr', { has: page.locator('.badge.delivered') }).first();
    const button = delivered.getByRole('button', { name: 'Redeliver' });
    const deliveryId = await button.getAttribute('data-redeliver');
    await button.click();
    await expectVisible(page.locator('.redelivered'));
    await waitFor(
      'the redelivery to arrive',
      async () => {
        await api.cron();
        const d = await api.request<{ attempts: number; status: string }>(
          'GET',
          `/v1/webhooks/deliveries/${deliveryId}`,
        );
        return received > before && d.body.attempts >= 2 && d.body.status === 'delivered';
      },
      120_000,
      2000,
    );
    await page.screenshot({ path: join(DOCS, 'dashboard-webhooks.png') });

    // phone width: the jobs list still fits without sideways scrolling of the page
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${api.url}/#/jobs/${jobId}`);
    await page.waitForFunction(CHART_HAS_4_POINTS);
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(1);
    await page.screenshot({ path: join(DOCS, 'dashboard-phone.png') });
    expect(errors).toEqual([]);
  }, 240_000);

  it('`cgrpo jobs follow` output, rendered for docs/cli-follow.png', async () => {
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'client', 'bin', 'cgrpo.mjs'), 'jobs', 'follow', jobId],
      {
        env: {
          ...process.env,
          CGRPO_API_URL: api.url,
          CGRPO_API_KEY: api.apiKey,
          CGRPO_CONFIG: join(tmpdir(), 'none.json'),
        },
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const page = await browser.newPage();
    await page.setViewportSize({ width: 900, height: 400 });
    await page.setContent(
      `<body style="margin:0;background:#1e1e1e"><pre id="t" style="color:#e6e6e6;font:14px monospace;padding:16px;margin:0"></pre></body>`,
    );
    await page.locator('#t').evaluate((el, text) => {
      el.textContent = text;
    }, `$ cgrpo jobs follow ${jobId}\n${r.stdout}$ echo $?\n0`);
    await page.locator('#t').screenshot({ path: join(DOCS, 'cli-follow.png') });
  }, 240_000);
});

async function expectVisible(locator: { waitFor(o: { state: 'visible'; timeout: number }): Promise<void> }) {
  await locator.waitFor({ state: 'visible', timeout: 15_000 });
}
