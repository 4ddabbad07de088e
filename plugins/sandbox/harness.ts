// The code the sandbox evaluates before the plugin: it drives the plugin's definition object
// (plugins/sdk) over a batch, and talks to the host only through the `host` functions it is given.
// It captures the intrinsics it needs first, so a plugin that overwrites JSON or Promise only breaks
// itself; the host re-validates everything the harness reports.
/** The `name` of the failure a too-large result becomes (the host reports it as invalid_result). */
export const RESULT_TOO_LARGE = 'cgrpo.ResultTooLarge';

export const HARNESS_SOURCE = String.raw`(function (host) {
  'use strict';
  // WebAssembly memory lives outside the heap the memory limit counts: no plugin capability grants
  // it, so it is removed before any plugin code runs (QuickJS has none to begin with)
  try { delete globalThis.WebAssembly; } catch (_) {}
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const isFiniteNumber = Number.isFinite;
  const isArray = Array.isArray;
  const hasOwn = Object.prototype.hasOwnProperty.call.bind(Object.prototype.hasOwnProperty);
  const toStr = String;
  const resolved = Promise.resolve.bind(Promise);
  const all = Promise.all.bind(Promise);
  const ErrorClass = Error;
  const NONFINITE = '\u0000nonfinite:';
  let plugin = null;
  let config = undefined;
  // calls begun and not finished, and how many llm.chat answers they await: probe() reports them
  // so a host that cannot see the VM's job queue can tell a call waiting on the host from a call
  // waiting on a promise nothing will ever settle
  const inflight = new Set();
  let chatsPending = 0;
  // every call's outcome ('1' + result JSON or '0' + thrown JSON), also returned by run() joined
  // with \u0001 (never bare inside JSON text) for hosts whose callbacks are asynchronous
  let results = [];
  // the batch's bounds (run()'s arguments): results and log lines are measured here, inside the
  // sandbox, so nothing larger than them is ever copied into the host
  let maxResult = Infinity;
  let maxLogLines = Infinity;
  let logLines = 0;
  // optional shared memory the host polls without entering the VM: 1 = call i began, 2 = it ended
  const progress = host.progress || null;
  const mark = (i, v) => {
    if (progress !== null && i < progress.length) progress[i] = v;
  };

  function replacer(key, value) {
    return typeof value === 'number' && !isFiniteNumber(value) ? NONFINITE + toStr(value) : value;
  }
  function hasNonFinite(v, depth) {
    if (typeof v === 'number') return !isFiniteNumber(v);
    if (v === null || typeof v !== 'object') return false;
    if (depth > 64) return true;
    if (isArray(v)) {
      for (let k = 0; k < v.length; k++) if (hasNonFinite(v[k], depth + 1)) return true;
      return false;
    }
    for (const k in v) if (hasOwn(v, k) && hasNonFinite(v[k], depth + 1)) return true;
    return false;
  }
  function describeThrown(e) {
    try {
      if (e instanceof ErrorClass) {
        return stringify({ error: true, name: toStr(e.name), message: toStr(e.message).slice(0, 2000) });
      }
      let shown;
      try { shown = typeof e === 'string' ? stringify(e) : stringify(e, replacer); } catch (_) { shown = undefined; }
      if (shown === undefined) shown = typeof e;
      return stringify({ error: false, name: typeof e, message: 'threw a non-Error value: ' + shown.slice(0, 500) });
    } catch (_) {
      return '{"error":false,"name":"unknown","message":"threw a value that cannot be described"}';
    }
  }
  function logger(i) {
    const emit = (level) => (...args) => {
      if (++logLines > maxLogLines) return;
      let line;
      try {
        line = args.map((a) => (typeof a === 'string' ? a : stringify(a, replacer))).join(' ');
      } catch (_) {
        line = '[unprintable log line]';
      }
      host.log(i, level, toStr(line).slice(0, 4000));
    };
    const log = emit('info');
    log.info = log;
    log.warn = emit('warn');
    log.error = emit('error');
    return log;
  }
  function chatFor(i) {
    return (messages, options) => {
      chatsPending++;
      const done = () => { chatsPending--; };
      return host.chat(i, stringify({ messages, options: options === undefined ? {} : options }))
        .then((answer) => { done(); return parse(answer); }, (e) => { done(); throw e; });
    };
  }
  function context(i) {
    return { config, log: logger(i), llm: { chat: chatFor(i) } };
  }
  function isThenable(value) {
    return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function';
  }
  function finish(i, value, maxCritique) {
    try {
      if (value !== null && typeof value === 'object' && typeof value.critique === 'string' && value.critique.length > maxCritique) {
        const length = value.critique.length;
        value = { critique: value.critique.slice(0, maxCritique) + '\n[cgrpo: critique truncated from ' + length + ' to ' + maxCritique + ' characters]', truncated_from: length };
      }
      // the replacer (which keeps NaN/Infinity visible) turns off V8's fast JSON path: only use it
      // when the result may hold a non-finite number (stringify writes those as null)
      let json = stringify(value);
      if (json !== undefined && json.indexOf('null') !== -1 && hasNonFinite(value, 0)) json = stringify(value, replacer);
      if (json !== undefined && json.length > maxResult) {
        inflight.delete(i);
        const text = stringify({ error: true, name: '${RESULT_TOO_LARGE}', message: 'the result is ' + json.length + ' characters of JSON, more than the ' + maxResult + ' allowed' });
        json = undefined;
        results[i] = '0' + text;
        mark(i, 2);
        host.fail(i, text);
        return;
      }
      inflight.delete(i);
      const text = json === undefined ? 'null' : json;
      results[i] = '1' + text;
      mark(i, 2);
      host.end(i, text);
    } catch (e) {
      failed(i, e);
    }
  }
  function failed(i, e) {
    inflight.delete(i);
    const text = describeThrown(e);
    results[i] = '0' + text;
    mark(i, 2);
    host.fail(i, text);
  }

  return {
    setPlugin(definition) {
      if (definition === null || typeof definition !== 'object' || definition.__cgrpo_plugin !== 1) {
        throw new TypeError("the bundle's default export is not a plugin: use export default defineVerifier(...), defineCritic(...) or defineShaping(...) from @cgrpo/plugins/sdk");
      }
      plugin = definition;
      return stringify({
        kind: toStr(definition.kind),
        sdk_version: toStr(definition.sdk_version),
        config_schema: definition.configJsonSchema(),
        shaping: definition.shaping === undefined ? null : definition.shaping,
      }, replacer);
    },
    configure(configJson) {
      const result = plugin.parseConfig(parse(configJson));
      if (result && result.ok === true) {
        config = result.value;
        return '{"ok":true}';
      }
      return stringify({ ok: false, issues: result && result.issues });
    },
    probe() {
      return stringify({ inflight: Array.from(inflight), chats: chatsPending });
    },
    run(batchJson, concurrency, maxCritique, maxResultChars, maxLogLinesPerBatch) {
      maxResult = maxResultChars;
      maxLogLines = maxLogLinesPerBatch;
      logLines = 0;
      inflight.clear();
      chatsPending = 0;
      results = [];
      const items = parse(batchJson);
      let next = 0;
      const worker = () => {
        for (;;) {
          if (next >= items.length) return undefined;
          const i = next++;
          inflight.add(i);
          mark(i, 1);
          host.begin(i);
          let out;
          try {
            out = plugin.run(items[i], context(i));
            if (isThenable(out)) {
              return resolved(out).then((v) => finish(i, v, maxCritique), (e) => failed(i, e)).then(worker);
            }
          } catch (e) {
            failed(i, e);
            continue;
          }
          finish(i, out, maxCritique);
        }
      };
      const workers = [];
      for (let k = 0; k < concurrency; k++) workers.push(resolved(undefined).then(worker));
      return all(workers).then(() => results.join('\u0001'));
    },
  };
})`;

/** Prefix the harness puts on non-finite numbers so JSON keeps them (JSON.stringify(NaN) is null). */
export const NONFINITE_MARK = '\u0000nonfinite:';
