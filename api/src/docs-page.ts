// The /docs page. @hono/swagger-ui loads Swagger UI from a CDN, which breaks offline use, so this
// is a small self-contained page instead: it reads /v1/openapi.json and lists every operation with
// its parameters, request body and responses (schemas shown as JSON). No external assets.

export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cgrpo API reference</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 980px; padding: 1rem 1.5rem 4rem; color: #1d2330; }
  h1 { margin-bottom: 0; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d8dde6; text-transform: capitalize; }
  details { border: 1px solid #d8dde6; border-radius: 6px; margin: .5rem 0; padding: .35rem .7rem; }
  summary { cursor: pointer; } code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
  pre { background: #f5f7fa; padding: .6rem; overflow: auto; max-height: 28rem; border-radius: 4px; }
  .m { display: inline-block; min-width: 4.2rem; font-weight: 700; text-transform: uppercase; }
  .get { color: #1f6feb; } .post { color: #1a7f37; } .put { color: #9a6700; } .delete { color: #cf222e; }
  .muted { color: #57606a; }
</style>
</head>
<body>
<h1>cgrpo API</h1>
<p class="muted">Generated from <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1). Authenticate with <code>Authorization: Bearer cgrpo_sk_…</code> (runner routes: <code>cgrpo_rt_…</code>). Errors are <code>{"error":{"code","message","fields":[{"path","message"}]}}</code>.</p>
<div id="ops">Loading…</div>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const pretty = (v) => '<pre>' + esc(JSON.stringify(v, null, 2)) + '</pre>';
fetch('/v1/openapi.json').then((r) => r.json()).then((doc) => {
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || 'other';
      (byTag[tag] = byTag[tag] || []).push({ path, method, op });
    }
  }
  let html = '';
  for (const [tag, ops] of Object.entries(byTag)) {
    html += '<h2>' + esc(tag) + '</h2>';
    for (const { path, method, op } of ops) {
      html += '<details><summary><span class="m ' + method + '">' + method + '</span><code>' + esc(path) + '</code> — ' + esc(op.summary || '') + '</summary>';
      if (op.description) html += '<p>' + esc(op.description) + '</p>';
      if (op.parameters && op.parameters.length) {
        html += '<p><b>Parameters</b></p><ul>' + op.parameters.map((p) => '<li><code>' + esc(p.name) + '</code> (' + esc(p.in) + (p.required ? ', required' : '') + ')</li>').join('') + '</ul>';
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) for (const [type, media] of Object.entries(body)) html += '<p><b>Body</b> <code>' + esc(type) + '</code></p>' + pretty(media.schema || {});
      for (const [status, res] of Object.entries(op.responses || {})) {
        html += '<p><b>' + esc(status) + '</b> ' + esc(res.description || '') + '</p>';
        const json = res.content && res.content['application/json'];
        if (json && json.schema && String(status).startsWith('2')) html += pretty(json.schema);
      }
      html += '</details>';
    }
  }
  html += '<h2>Schemas</h2>';
  for (const [name, schema] of Object.entries((doc.components && doc.components.schemas) || {})) {
    html += '<details id="' + esc(name) + '"><summary><code>' + esc(name) + '</code></summary>' + pretty(schema) + '</details>';
  }
  document.getElementById('ops').innerHTML = html;
}).catch((e) => { document.getElementById('ops').textContent = 'Could not load the OpenAPI document: ' + e; });
</script>
</body>
</html>`;
