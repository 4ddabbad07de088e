// The cgrpo dashboard: plain ES modules over the JSON API (/v1), served by the Worker as static
// assets. The API key lives in sessionStorage (gone when the tab closes). Live updates come over
// the job's SSE route (read with fetch, since EventSource cannot send an Authorization header).
import uPlot from './vendor/uPlot.esm.js';

const KEY = 'cgrpo.apiKey';
const main = document.getElementById('main');
const statusEl = document.getElementById('status');
const cleanup = [];
/** The job tab just chosen (by click or keyboard): it keeps the focus when the page re-renders. */
let focusTab = null;

// ---- API -----------------------------------------------------------------------------------
function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(path, init = {}) {
  const res = await fetch(`/v1${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${apiKey()}`,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.headers ?? {}),
    },
  });
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    location.hash = '#/login?expired=1';
    throw new Error('the API key was refused: sign in again');
  }
  if (!res.ok) {
    let msg = `${res.status}`;
    try {
      const body = await res.json();
      msg = `${body.error.code}: ${body.error.message}`;
    } catch {}
    throw new Error(msg);
  }
  return res;
}
const getJson = async (path) => (await api(path)).json();

/** Reads a job's SSE stream; calls onEvent for each event until the stream ends or is aborted. */
async function streamEvents(jobId, cursor, onEvent, signal) {
  const q = cursor ? `?cursor=${cursor}&poll_ms=500` : '?poll_ms=500';
  const res = await api(`/jobs/${jobId}/stream${q}`, { signal, headers: { accept: 'text/event-stream' } });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let data = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data) onEvent(JSON.parse(data));
        data = '';
      } else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
      nl = buf.indexOf('\n');
    }
  }
}

// ---- helpers -------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat())
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
/** A labelled control: the label holds only its text, so the control's accessible name is exact. */
function field(text, control) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, text), control);
}
const fmt = (v, d = 3) =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : Number(Number(v).toFixed(d));
const badge = (s) => h('span', { class: `badge ${s}` }, s);
const announce = (msg) => {
  statusEl.textContent = msg;
};
function render(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
}
function showError(e) {
  main.append(h('p', { class: 'error', role: 'alert' }, String(e.message ?? e)));
}
function table(head, rows, onRow) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          head.map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map((r, i) => {
          const tr = h(
            'tr',
            onRow ? { class: 'clickable', tabindex: '0' } : {},
            r.map((c) => h('td', {}, c)),
          );
          if (onRow) {
            tr.addEventListener('click', () => onRow(i, tr));
            tr.addEventListener('keydown', (e) => {
              if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                onRow(i, tr);
              }
            });
          }
          return tr;
        }),
      ),
    ),
  );
}

// ---- charts --------------------------------------------------------------------------------
/** The charts of a job page: one per panel, each a list of metric names. */
export const PANELS = [
  { title: 'Reward', names: ['reward/mean'] },
  { title: 'pass@1 (train / eval)', names: ['pass@1/train', 'eval/pass@1'] },
  { title: 'Refinement success rate', names: ['refinement/success_rate'] },
  { title: 'Groups without signal', names: ['groups/zero_signal'] },
  { title: 'Response length', names: ['response_length/mean'] },
  { title: 'Entropy', names: ['entropy'] },
  { title: 'Loss', names: ['loss'] },
  { title: 'Grad norm', names: ['grad_norm'] },
];
const COLORS = ['#2456c8', '#d9480f', '#2b8a3e', '#862e9c'];

/** A uPlot chart over series {label, points: [[step, value]]}; returns {el, setSeries}. */
function lineChart(title, labels) {
  const el = h('figure', { class: 'chart', 'data-chart': title }, h('h3', {}, title));
  el.setAttribute('aria-label', `${title} by step`);
  const width = () => Math.max(260, Math.min(560, el.clientWidth - 16 || 340));
  const plot = new uPlot(
    {
      width: width(),
      height: 200,
      scales: { x: { time: false } },
      axes: [
        { label: 'step' },
        {
          size: 56,
          values: (_u, splits) => splits.map((v) => (v == null ? '' : String(Number(v.toPrecision(3))))),
        },
      ],
      series: [
        { label: 'step' },
        ...labels.map((l, i) => ({
          label: l,
          stroke: COLORS[i % 4],
          width: 2,
          points: { show: true, size: 5 },
          spanGaps: true,
        })),
      ],
    },
    [[], ...labels.map(() => [])],
    el,
  );
  // Resized on the next frame (a resize inside the observer callback would loop).
  const ro = new ResizeObserver(() =>
    requestAnimationFrame(() => plot.setSize({ width: width(), height: 200 })),
  );
  ro.observe(el);
  cleanup.push(() => ro.disconnect());
  return {
    el,
    plot,
    /** series: arrays of [step, value] in label order. */
    setSeries(series) {
      const steps = [...new Set(series.flatMap((s) => s.map((p) => p[0])))].sort((a, b) => a - b);
      const cols = series.map((s) => {
        const m = new Map(s);
        return steps.map((x) => (m.has(x) ? m.get(x) : null));
      });
      plot.setData([steps, ...cols]);
      const counts = cols.map((c) => c.filter((v) => v !== null).length);
      el.dataset.points = String(counts.reduce((n, c) => n + c, 0));
      el.dataset.series = counts.join(',');
    },
  };
}

// ---- views ---------------------------------------------------------------------------------
function loginView(params) {
  const key = params.get('key');
  if (key) {
    sessionStorage.setItem(KEY, key);
    history.replaceState(null, '', location.pathname);
    location.hash = '#/jobs';
    return;
  }
  const input = h('input', {
    id: 'api-key',
    name: 'key',
    type: 'password',
    autocomplete: 'off',
    required: true,
    placeholder: 'cgrpo_sk_…',
  });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    { class: 'row', 'aria-label': 'Sign in' },
    field('API key', input),
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    // Checked with a plain fetch: api() would route a 401 back to this page and drop the message.
    const res = await fetch('/v1/account', { headers: { authorization: `Bearer ${key}` } }).catch(
      (error) => error,
    );
    if (res instanceof Response && res.ok) {
      sessionStorage.setItem(KEY, key);
      location.hash = '#/jobs';
      return;
    }
    let why = res instanceof Response ? String(res.status) : String(res.message ?? res);
    if (res instanceof Response) {
      try {
        const body = await res.json();
        why = `${body.error.code}: ${body.error.message}`;
      } catch {}
    }
    err.textContent = `Sign-in failed (${why}). Use the key \`npm start\` printed, or create one with POST /v1/keys.`;
    input.focus();
  });
  render(
    h('h1', {}, 'Sign in'),
    params.get('expired') ? h('p', { class: 'error' }, 'Your key was refused; sign in again.') : null,
    h('p', { class: 'muted' }, 'The key stays in this tab only (sessionStorage).'),
    form,
    err,
  );
  input.focus();
}

async function jobsView() {
  const body = h('div', {}, h('p', {}, 'Loading jobs…'));
  render(h('h1', {}, 'Jobs'), body);
  const refresh = async () => {
    const { data } = await getJson('/jobs?limit=100');
    if (!data.length) {
      body.replaceChildren(
        h('p', {}, 'No jobs yet. Create one with ', h('code', {}, 'cgrpo jobs create -f job.json'), '.'),
      );
      return;
    }
    body.replaceChildren(
      table(
        ['Job', 'Status', 'Progress', 'Algorithm', 'Created'],
        data.map((j) => [
          h('a', { href: `#/jobs/${j.id}` }, j.name || j.id, h('div', { class: 'muted' }, j.id)),
          badge(j.status),
          h(
            'span',
            {},
            h('progress', {
              max: String(j.total_steps),
              value: String(j.current_step ?? 0),
              'aria-label': `step ${j.current_step ?? 0} of ${j.total_steps}`,
            }),
            ` ${j.current_step ?? 0}/${j.total_steps}`,
          ),
          j.algorithm,
          h('time', { class: 'hide-sm' }, new Date(j.created_at).toLocaleString()),
        ]),
      ),
    );
  };
  await refresh();
  const t = setInterval(() => refresh().catch(() => {}), 3000);
  cleanup.push(() => clearInterval(t));
}

async function jobView(id, params) {
  const job = await getJson(`/jobs/${id}`);
  const head = h('div', {});
  const drawHead = (j) =>
    head.replaceChildren(
      h('h1', {}, j.name || j.id, ' ', badge(j.status)),
      h(
        'p',
        {},
        h('progress', {
          max: String(j.total_steps),
          value: String(j.current_step ?? 0),
          'aria-label': 'progress',
        }),
        ` step ${j.current_step ?? 0} of ${j.total_steps} · ${j.algorithm} · ${j.id}`,
        j.error ? h('span', { class: 'error' }, ` · ${j.error.code}: ${j.error.message}`) : null,
      ),
      h(
        'div',
        { class: 'actions' },
        ['pause', 'resume', 'cancel'].map((a) =>
          h(
            'button',
            {
              type: 'button',
              onclick: async () => {
                try {
                  drawHead(await (await api(`/jobs/${id}/${a}`, { method: 'POST' })).json());
                  announce(`${a} requested`);
                } catch (e) {
                  announce(e.message);
                  alert(e.message);
                }
              },
            },
            a[0].toUpperCase() + a.slice(1),
          ),
        ),
        h('a', { href: `#/compare?a=${id}` }, 'Compare with another job'),
      ),
    );
  drawHead(job);
  const tabs = ['Charts', 'Events', 'Rollouts', 'Checkpoints', 'Spec'];
  const current = tabs.includes(params.get('tab')) ? params.get('tab') : 'Charts';
  const panel = h('div', {
    role: 'tabpanel',
    id: 'job-panel',
    'aria-labelledby': `tab-${current}`,
    tabindex: '0',
  });
  const open = (t) => {
    focusTab = t;
    location.hash = `#/jobs/${id}?tab=${t}`;
  };
  const tabBar = h(
    'div',
    { class: 'tabs', role: 'tablist', 'aria-label': 'Job sections' },
    tabs.map((t) =>
      h(
        'button',
        {
          type: 'button',
          role: 'tab',
          id: `tab-${t}`,
          'aria-selected': String(t === current),
          'aria-controls': 'job-panel',
          // only the selected tab is in the Tab order; arrows move between tabs
          tabindex: t === current ? '0' : '-1',
          onclick: () => open(t),
        },
        t,
      ),
    ),
  );
  tabBar.addEventListener('keydown', (e) => {
    const buttons = [...tabBar.querySelectorAll('[role="tab"]')];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const to =
      e.key === 'ArrowRight'
        ? (at + 1) % buttons.length
        : e.key === 'ArrowLeft'
          ? (at - 1 + buttons.length) % buttons.length
          : e.key === 'Home'
            ? 0
            : e.key === 'End'
              ? buttons.length - 1
              : -1;
    if (to < 0) return;
    e.preventDefault();
    buttons[to].focus();
  });
  render(head, tabBar, panel);
  if (focusTab === current) tabBar.querySelector(`#tab-${current}`).focus();
  focusTab = null;
  const ctrl = new AbortController();
  cleanup.push(() => ctrl.abort());
  if (current === 'Charts') await chartsTab(id, panel, ctrl.signal, drawHead);
  else if (current === 'Events') await eventsTab(id, panel, ctrl.signal);
  else if (current === 'Rollouts') await rolloutsTab(id, panel, params);
  else if (current === 'Checkpoints') await checkpointsTab(id, panel);
  else panel.append(h('pre', {}, JSON.stringify(job.spec, null, 2)));
}

async function allMetrics(id) {
  const out = [];
  let from = 0;
  while (from !== null) {
    const page = await getJson(`/jobs/${id}/metrics?from_step=${from}&limit=1000`);
    out.push(...page.data);
    from = page.next_from_step;
  }
  return out;
}

async function chartsTab(id, panel, signal, drawHead) {
  const charts = PANELS.map((p) => ({ ...p, chart: lineChart(p.title, p.names) }));
  panel.append(
    h(
      'div',
      { class: 'charts' },
      charts.map((c) => c.chart.el),
    ),
  );
  let points = [];
  const draw = () => {
    for (const c of charts)
      c.chart.setSeries(
        c.names.map((n) =>
          points.filter((p) => typeof p.values[n] === 'number').map((p) => [p.step, p.values[n]]),
        ),
      );
  };
  points = await allMetrics(id);
  draw();
  // Live: each job.progress/job.evaluated event pulls the new metric points.
  const live = async () => {
    // One metrics fetch at a time; events that arrive meanwhile ask for one more afterwards.
    let running = false;
    let again = false;
    const pull = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      do {
        again = false;
        const from = points.length ? points[points.length - 1].step + 1 : 0;
        const page = await getJson(`/jobs/${id}/metrics?from_step=${from}`);
        if (page.data.length) {
          points = points.concat(page.data);
          draw();
        }
      } while (again);
      running = false;
    };
    const lastStep = () => (points.length ? points[points.length - 1].step : -1);
    await streamEvents(
      id,
      undefined,
      async (e) => {
        // The stream replays the job's history first: only newer steps need a fetch.
        const step = typeof e.data?.step === 'number' ? e.data.step : null;
        const fresh =
          (e.type === 'job.progress' || e.type === 'job.evaluated') && step !== null && step > lastStep();
        if (fresh) await pull();
        if (fresh || !['job.log', 'job.progress', 'job.evaluated'].includes(e.type))
          drawHead(await getJson(`/jobs/${id}`));
      },
      signal,
    );
    drawHead(await getJson(`/jobs/${id}`));
  };
  live().catch(() => {});
}

async function eventsTab(id, panel, signal) {
  const list = h('ol', { class: 'timeline', 'aria-label': 'Events, oldest first' });
  panel.append(list);
  const add = (e) =>
    list.append(
      h(
        'li',
        {},
        h('time', { datetime: e.created_at }, new Date(e.created_at).toLocaleTimeString()),
        h('strong', {}, e.type),
        ' ',
        h('span', { class: 'muted' }, summarize(e)),
      ),
    );
  streamEvents(id, undefined, add, signal)
    .then(() => {
      list.dataset.complete = 'true';
    })
    .catch(() => {});
}
function summarize(e) {
  const d = e.data ?? {};
  if (e.type === 'job.progress' && d.step !== undefined)
    return `step ${d.step}/${d.total_steps ?? '?'} reward ${fmt(d['reward/mean'])} loss ${fmt(d.loss)}`;
  if (e.type === 'job.checkpoint') return `step ${d.step}${d.final ? ' (final)' : ''}`;
  if (e.type === 'job.log') return String(d.message ?? '');
  return JSON.stringify(d).slice(0, 160);
}

async function rolloutsTab(id, panel, params) {
  const { steps } = await getJson(`/jobs/${id}/rollouts`);
  const stepNums = steps.map((s) => (typeof s === 'number' ? s : s.step)).sort((a, b) => a - b);
  if (!stepNums.length) {
    panel.append(h('p', {}, 'No rollouts stored yet.'));
    return;
  }
  const stepSel = h(
    'select',
    { id: 'ro-step' },
    stepNums.map((s) => h('option', { value: String(s) }, `step ${s}`)),
  );
  stepSel.value = params.get('step') ?? String(stepNums[stepNums.length - 1]);
  const kindSel = h(
    'select',
    { id: 'ro-kind' },
    h('option', { value: '' }, 'all'),
    h('option', { value: 'initial' }, 'initial'),
    h('option', { value: 'refinement' }, 'refinement'),
  );
  const minR = h('input', { id: 'ro-min', type: 'number', step: 'any', inputmode: 'decimal', size: '6' });
  const maxR = h('input', { id: 'ro-max', type: 'number', step: 'any', inputmode: 'decimal', size: '6' });
  const list = h('div', { id: 'rollout-list' });
  const detail = h('div', { id: 'rollout-detail', 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Filter rollouts' },
    field('Step', stepSel),
    field('Kind', kindSel),
    field('Min reward', minR),
    field('Max reward', maxR),
    h('button', { type: 'submit' }, 'Show'),
  );
  let loads = 0;
  const load = async () => {
    const q = new URLSearchParams({ step: stepSel.value, limit: '200' });
    if (kindSel.value) q.set('kind', kindSel.value);
    if (minR.value !== '') q.set('min_reward', minR.value);
    if (maxR.value !== '') q.set('max_reward', maxR.value);
    const token = ++loads;
    list.setAttribute('aria-busy', 'true');
    const { data } = await getJson(`/jobs/${id}/rollouts?${q}`);
    if (token !== loads) return; // a newer filter was applied meanwhile
    detail.replaceChildren();
    list.dataset.loaded = `${stepSel.value}:${kindSel.value || 'all'}`;
    list.removeAttribute('aria-busy');
    list.replaceChildren(
      data.length
        ? table(
            ['#', 'Kind', 'Reward', 'Response', 'Critique'],
            data.map((r, i) => [
              String(i + 1),
              r.kind ?? '',
              String(fmt(r.reward)),
              String(r.response ?? '').slice(0, 60),
              r.critique ? 'yes' : '',
            ]),
            (i, tr) => {
              for (const row of list.querySelectorAll('tr.selected')) row.classList.remove('selected');
              tr.classList.add('selected');
              showRollout(id, data, data[i], detail).catch(showError);
            },
          )
        : h('p', {}, 'No rollouts match.'),
    );
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    load().catch(showError);
  });
  panel.append(form, list, detail);
  await load();
}

async function showRollout(jobId, all, r, detail) {
  // The refinement of an initial sample has the same prompt and sample index; when the list is
  // filtered to initial samples, it is fetched.
  const match = (list) =>
    list.find((x) => x.kind === 'refinement' && x.prompt_index === r.prompt_index && x.sample === r.sample);
  let refinement = r.kind === 'refinement' ? r : match(all);
  if (!refinement && r.kind === 'initial' && typeof r.step === 'number') {
    const more = await getJson(`/jobs/${jobId}/rollouts?step=${r.step}&kind=refinement&limit=1000`).catch(
      () => ({
        data: [],
      }),
    );
    refinement = match(more.data);
  }
  const sec = (title, text, cls) =>
    h('section', { class: cls }, h('h3', {}, title), h('pre', {}, text ?? '–'));
  detail.replaceChildren(
    h('h2', {}, `Rollout · ${r.kind ?? ''} · prompt ${r.prompt_index ?? ''} sample ${r.sample ?? ''}`),
    h(
      'div',
      { class: 'side' },
      sec('Prompt', r.prompt),
      sec('Response', r.kind === 'refinement' ? '(refinement below)' : r.response),
      sec(
        'Reward',
        `${fmt(r.reward)}${r.correct === true ? ' (correct)' : r.correct === false ? ' (wrong)' : ''}${r.advantage != null ? `\nadvantage ${fmt(r.advantage)}` : ''}`,
      ),
      sec('Critique', r.critique, 'critique'),
      sec('Refinement', refinement ? `${refinement.response}\n\nreward ${fmt(refinement.reward)}` : '–'),
    ),
  );
  detail.querySelector('h2').setAttribute('tabindex', '-1');
  detail.querySelector('h2').focus();
}

async function checkpointsTab(id, panel) {
  const { data } = await getJson(`/jobs/${id}/checkpoints`);
  if (!data.length) {
    panel.append(h('p', {}, 'No checkpoints yet.'));
    return;
  }
  panel.append(
    table(
      ['Step', 'Kind', 'Status', 'Size', 'sha256', ''],
      data.map((c) => [
        String(c.step) + (c.final ? ' (final)' : ''),
        c.kind,
        badge(c.status),
        c.size ? `${(c.size / 1024).toFixed(1)} KiB` : '',
        h('code', { class: 'hide-sm' }, (c.sha256 ?? '').slice(0, 12)),
        c.status === 'complete'
          ? h(
              'button',
              {
                type: 'button',
                'aria-label': `Download step ${c.step}`,
                'data-checkpoint': c.id,
                onclick: () =>
                  download(`/jobs/${id}/checkpoints/${c.id}/content`, `${id}-step${c.step}.tar`).catch((e) =>
                    showError(e),
                  ),
              },
              'Download',
            )
          : '',
      ]),
    ),
    h(
      'p',
      { class: 'muted' },
      'Or: ',
      h('code', {}, `cgrpo checkpoints download ${id}`),
      ' (checks the sha256).',
    ),
  );
}
async function download(path, name) {
  const blob = await (await api(path)).blob();
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

async function compareView(params) {
  const { data } = await getJson('/jobs?limit=100');
  const opts = (sel) =>
    data.map((j) =>
      h('option', { value: j.id, selected: j.id === sel }, `${j.name} (${j.algorithm}) ${j.id}`),
    );
  const a = h('select', { id: 'cmp-a' }, opts(params.get('a')));
  const b = h(
    'select',
    { id: 'cmp-b' },
    opts(params.get('b') ?? data.find((j) => j.id !== params.get('a'))?.id),
  );
  const metric = h(
    'select',
    { id: 'cmp-metric' },
    PANELS.flatMap((p) => p.names).map((n) =>
      h('option', { value: n, selected: n === (params.get('metric') ?? 'reward/mean') }, n),
    ),
  );
  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Pick two jobs' },
    field('Job A', a),
    field('Job B', b),
    field('Metric', metric),
    h('button', { type: 'submit', class: 'primary' }, 'Compare'),
  );
  const out = h('div', {});
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/compare?a=${a.value}&b=${b.value}&metric=${encodeURIComponent(metric.value)}`;
  });
  render(h('h1', {}, 'Compare two jobs'), form, out);
  if (!params.get('a') || !params.get('b')) return;
  const [ma, mb] = await Promise.all([allMetrics(params.get('a')), allMetrics(params.get('b'))]);
  const n = metric.value;
  const name = (id) => data.find((j) => j.id === id)?.name ?? id;
  const chart = lineChart(n, [`A: ${name(params.get('a'))}`, `B: ${name(params.get('b'))}`]);
  out.append(chart.el);
  const ser = (pts) => pts.filter((p) => typeof p.values[n] === 'number').map((p) => [p.step, p.values[n]]);
  chart.setSeries([ser(ma), ser(mb)]);
}

async function webhooksView(params) {
  const { data } = await getJson('/webhooks/endpoints');
  const body = h('div', {});
  render(h('h1', {}, 'Webhooks'), body);
  if (!data.length) {
    body.append(
      h('p', {}, 'No endpoints. Create one with ', h('code', {}, 'cgrpo webhooks create --url https://…')),
    );
    return;
  }
  const deliveries = h('div', { id: 'deliveries' });
  body.append(
    table(
      ['Endpoint', 'Events', 'Enabled', ''],
      data.map((e) => [
        h('span', {}, e.url, h('div', { class: 'muted' }, e.id)),
        e.event_types.join(', '),
        e.enabled ? 'yes' : `no (${e.disabled_reason ?? ''})`,
        h(
          'button',
          { type: 'button', onclick: () => (location.hash = `#/webhooks?endpoint=${e.id}`) },
          'Deliveries',
        ),
      ]),
    ),
    deliveries,
  );
  const ep = params.get('endpoint');
  if (!ep) return;
  const list = await getJson(`/webhooks/endpoints/${ep}/deliveries`);
  deliveries.append(
    h('h2', {}, `Deliveries of ${ep}`),
    list.data.length
      ? table(
          ['Event', 'Status', 'Attempts', 'Last HTTP', 'Created', ''],
          list.data.map((d) => [
            h('span', {}, d.event_type, h('div', { class: 'muted' }, d.id)),
            badge(d.status),
            String(d.attempts),
            String(d.last_status_code ?? d.last_error ?? ''),
            new Date(d.created_at).toLocaleString(),
            h(
              'button',
              {
                type: 'button',
                'data-redeliver': d.id,
                onclick: async (ev) => {
                  try {
                    const r = await (
                      await api(`/webhooks/deliveries/${d.id}/redeliver`, { method: 'POST' })
                    ).json();
                    ev.target.replaceWith(
                      h(
                        'span',
                        { class: 'redelivered', role: 'status' },
                        `Redelivery queued${r.id ? ` (${r.id})` : ''}`,
                      ),
                    );
                    announce('redelivery queued');
                  } catch (e) {
                    ev.target.after(h('span', { class: 'error', role: 'alert' }, ` ${e.message}`));
                  }
                },
              },
              'Redeliver',
            ),
          ]),
        )
      : h('p', {}, 'No deliveries yet.'),
  );
}

async function pluginsView() {
  const { data } = await getJson('/plugins');
  render(
    h('h1', {}, 'Plugins'),
    table(
      ['Plugin', 'Kind', 'Version', 'Description'],
      data.map((p) => [
        h('code', {}, p.ref),
        p.kind,
        p.version,
        `${p.description}${p.deprecated ? ' (deprecated)' : ''}`,
      ]),
    ),
  );
}

// ---- router --------------------------------------------------------------------------------
async function route() {
  for (const f of cleanup.splice(0)) f();
  const [path, qs] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(qs ?? '');
  document.getElementById('signout').hidden = !apiKey();
  try {
    if (path === '/login' || !apiKey()) return loginView(params);
    const parts = (path || '/jobs').split('/').filter(Boolean);
    if (parts[0] === 'jobs' && parts[1]) return await jobView(parts[1], params);
    if (parts[0] === 'compare') return await compareView(params);
    if (parts[0] === 'webhooks') return await webhooksView(params);
    if (parts[0] === 'plugins') return await pluginsView();
    return await jobsView();
  } catch (e) {
    showError(e);
  }
}
document.getElementById('signout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  location.hash = '#/login';
});
window.addEventListener('hashchange', route);
route();
