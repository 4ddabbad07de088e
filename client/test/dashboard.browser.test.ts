// The dashboard end to end in a real browser: Debian's chromium driven by playwright-core, against
// the real API under wrangler dev (which serves api/public as the Worker's static assets), a real
// CPU runner that trains a tiny job, and a real webhook receiver on loopback. Sign in, open the
// job, see a chart with points, open a rollout with a critique, redeliver a delivery; the events
// timeline, two jobs on one chart, a checkpoint downloaded through the browser, the plugins list,
// keyboard-only use and phone width. With CGRPO_SCREENSHOTS=1 it writes the screenshots in docs/
// (dashboard and `cgrpo jobs follow`).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
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
/** A GRPO job next to the Critique-GRPO one, for the compare view. */
let grpoJobId: string;
let endpointId: string;
/**
 * How long a wait in the page may take. The dashboard answers in well under a second on an idle
 * machine, but on 2 cores shared with workerd, the runner and other tests one API call has taken
 * 30 s; a wait that ends early costs nothing, so the cap is generous.
 */
const WAIT = 120_000;

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
  const grpo = tinyJob({ name: 'dashboard-grpo', algorithm: 'grpo', seed: 8 });
  delete grpo.critic;
  const second = await api.request<{ id: string }>('POST', '/v1/jobs', grpo);
  expect(second.status, JSON.stringify(second.body)).toBe(201);
  grpoJobId = second.body.id;
  const { token } = registerRunner(api, 'dashboard-e2e');
  const runner = startRunner(api, token, { exitAfter: 2 });
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
}, 600_000);

afterAll(async () => {
  await browser?.close();
  stopRunners(false);
  await api?.stop();
  receiver?.close();
});

describe('dashboard in chromium', () => {
  it('signs in, shows a live chart with points, a rollout with its critique, and redelivers a webhook', async () => {
    const { page, errors } = await newPage();

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
    expect(errors).toEqual([]);
  }, 480_000);

  it(
    'the events timeline shows every event of the job, oldest first',
    async () => {
      const { page, errors } = await signedIn(`#/jobs/${jobId}?tab=Events`);
      const list = page.locator('ol.timeline[data-complete="true"]');
      await list.waitFor();
      const shown = await list.locator('li strong').allTextContents();
      const types: string[] = [];
      for (let cursor = ''; ; ) {
        const page = await api.request<{ data: { type: string }[]; next_cursor: string | null }>(
          'GET',
          `/v1/jobs/${jobId}/events?limit=100${cursor ? `&cursor=${cursor}` : ''}`,
        );
        types.push(...page.body.data.map((e) => e.type));
        if (!page.body.data.length || !page.body.next_cursor) break;
        cursor = page.body.next_cursor;
      }
      expect(shown).toEqual(types);
      expect(shown[0]).toBe('job.queued');
      expect(shown.at(-1)).toBe('job.succeeded');
      // one progress event per step at least (the runner may also report setup progress)
      expect(shown.filter((t) => t === 'job.progress').length).toBeGreaterThanOrEqual(4);
      await expectVisible(list.locator('li', { hasText: 'step 4/4 reward' }));
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

  it(
    'the compare view draws both jobs as two series on one chart',
    async () => {
      const { page, errors } = await signedIn(`#/compare?a=${jobId}&b=${grpoJobId}&metric=reward%2Fmean`);
      const chart = page.locator('figure[data-chart="reward/mean"]');
      await chart.and(page.locator('[data-series]')).waitFor();
      expect(await chart.getAttribute('data-series')).toBe('4,4');
      await expectVisible(chart.locator('.u-legend', { hasText: 'A: dashboard-e2e' }));
      await expectVisible(chart.locator('.u-legend', { hasText: 'B: dashboard-grpo' }));
      // the form shows the pair, so the next comparison starts from it
      expect(await page.getByLabel('Job A').inputValue()).toBe(jobId);
      expect(await page.getByLabel('Job B').inputValue()).toBe(grpoJobId);
      await page.screenshot({ path: join(DOCS, 'dashboard-compare.png') });
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

  it(
    'the checkpoints tab lists the checkpoints and downloads the bytes the API has',
    async () => {
      const { page, errors } = await signedIn(`#/jobs/${jobId}?tab=Checkpoints`);
      const listed = await api.request<{
        data: { id: string; step: number; final: boolean; size: number; sha256: string }[];
      }>('GET', `/v1/jobs/${jobId}/checkpoints`);
      const final = listed.body.data.find((c) => c.final);
      expect(final?.step).toBe(4);
      const rows = page.locator('#job-panel tbody tr');
      await rows.first().waitFor();
      expect(await rows.count()).toBe(listed.body.data.length);
      await expectVisible(rows.filter({ hasText: '4 (final)' }));
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: WAIT }),
        page.getByRole('button', { name: 'Download step 4' }).click(),
      ]);
      expect(download.suggestedFilename()).toBe(`${jobId}-step4.tar`);
      const bytes = readFileSync(await download.path());
      expect(bytes.length).toBe(final?.size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(final?.sha256);
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

  it(
    'the plugins page lists the built-in plugins the API has',
    async () => {
      const { page, errors } = await signedIn('#/plugins');
      const plugins = (await api.request<{ data: { ref: string; kind: string }[] }>('GET', '/v1/plugins'))
        .body.data;
      expect(plugins.length).toBeGreaterThan(1);
      await page.getByRole('heading', { name: 'Plugins' }).waitFor();
      const refs = await page.locator('tbody tr td:first-child code').allTextContents();
      expect(refs).toEqual(plugins.map((p) => p.ref));
      expect(refs).toEqual(expect.arrayContaining(['builtin:math', 'builtin:ground-truth']));
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

  it(
    'works from the keyboard alone: sign-in field, a job link, the tab list with arrow keys',
    async () => {
      const { page, errors } = await newPage();
      await page.goto(`${api.url}/`);
      await page.locator('#api-key').waitFor();
      // from the top of the page, Tab reaches the sign-in field, named by its label
      await page.evaluate('document.activeElement?.blur()');
      await tabUntil(page, `document.activeElement?.id === 'api-key'`, 15);
      expect(
        await page.evaluate<string | undefined>('document.activeElement?.labels?.[0]?.textContent'),
      ).toBe('API key');
      await page.keyboard.type(api.apiKey);
      await page.keyboard.press('Enter');
      await page.getByRole('link', { name: /dashboard-e2e/ }).waitFor();
      await tabUntil(page, `document.activeElement?.textContent?.includes('dashboard-e2e') ?? false`, 30);
      await page.keyboard.press('Enter');
      await page.locator('[role="tablist"]').waitFor();
      // one tab stop for the whole tab list: the selected tab
      await tabUntil(page, `document.activeElement?.getAttribute('role') === 'tab'`, 30);
      const focused = () =>
        page.evaluate<{ id?: string; selected?: string | null }>(
          `({ id: document.activeElement?.id, selected: document.activeElement?.getAttribute('aria-selected') })`,
        );
      expect(await focused()).toEqual({ id: 'tab-Charts', selected: 'true' });
      await page.keyboard.press('ArrowRight');
      expect(await focused()).toEqual({ id: 'tab-Events', selected: 'false' });
      await page.keyboard.press('ArrowLeft');
      await page.keyboard.press('End');
      expect((await focused()).id).toBe('tab-Spec');
      await page.keyboard.press('Home');
      await page.keyboard.press('ArrowRight');
      await page.keyboard.press('Enter');
      await page.locator('ol.timeline').waitFor();
      // the chosen tab keeps the focus after the page re-renders, and is now the selected one
      await page.waitForFunction(`document.activeElement?.id === 'tab-Events'`);
      expect(await focused()).toEqual({ id: 'tab-Events', selected: 'true' });
      expect(page.url()).toContain(`#/jobs/${jobId}?tab=Events`);
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

  it(
    'fits a 390 px phone: no sideways scrolling on any tab of the job page',
    async () => {
      const { page, errors } = await signedIn(`#/jobs/${jobId}`, { width: 390, height: 844 });
      await page.waitForFunction(CHART_HAS_4_POINTS);
      const overflow = () =>
        page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
      expect(await overflow()).toBeLessThanOrEqual(1);
      await page.screenshot({ path: join(DOCS, 'dashboard-phone.png') });
      const ready: Record<string, string> = {
        Events: 'ol.timeline[data-complete="true"]',
        Rollouts: '#rollout-list[data-loaded]',
        Checkpoints: '#job-panel tbody tr',
        Spec: '#job-panel pre',
      };
      for (const [tab, selector] of Object.entries(ready)) {
        await page.getByRole('tab', { name: tab }).click();
        await page.locator(selector).first().waitFor();
        expect(await overflow(), `${tab} tab`).toBeLessThanOrEqual(1);
      }
      expect(errors).toEqual([]);
    },
    WAIT * 2,
  );

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
  await locator.waitFor({ state: 'visible', timeout: WAIT });
}

/** A fresh tab (its own sessionStorage, so signed out) that records uncaught page errors. */
async function newPage(viewport?: {
  width: number;
  height: number;
}): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  page.setDefaultNavigationTimeout(WAIT);
  page.setDefaultTimeout(WAIT);
  if (viewport) await page.setViewportSize(viewport);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return { page, errors };
}

/** A fresh tab signed in through the sign-in link (`#/login?key=`), then at `hash`. */
async function signedIn(hash: string, viewport?: { width: number; height: number }) {
  const p = await newPage(viewport);
  await p.page.goto(`${api.url}/#/login?key=${encodeURIComponent(api.apiKey)}`);
  await p.page.getByRole('heading', { name: 'Jobs' }).waitFor();
  await p.page.goto(`${api.url}/${hash}`);
  return p;
}

/** Presses Tab until `condition` (evaluated in the page) holds; fails after `max` presses. */
async function tabUntil(page: Page, condition: string, max: number) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate<boolean>(condition)) return;
  }
  const at = await page.evaluate<string | undefined>('document.activeElement?.outerHTML.slice(0, 120)');
  throw new Error(`${max} presses of Tab did not reach ${condition}; focus is on ${at}`);
}
