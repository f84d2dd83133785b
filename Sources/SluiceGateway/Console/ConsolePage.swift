/// The live console at `GET /`: submit a prompt, watch its tokens arrive over
/// `EventSource`, see its metrics; or follow any job by id. Plain HTML, CSS and JS in the
/// binary, nothing from a CDN.
///
/// `/?prompt=…&model=…` fills the form and `/?job=ID` follows a job, for links; nothing
/// is ever submitted without a click, so a link from another site cannot spend the
/// operator's provider credits. `EventSource` cannot send an `Authorization`
/// header, so with `gateway.api_keys` configured the console can submit (with the key
/// typed in) but not follow the events; it is meant for open, local gateways.
enum ConsolePage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice console</title>
<style>
  :root { --bg:#0f1419; --panel:#171d24; --fg:#e6e6e6; --muted:#8b949e; --accent:#4fb3d9; --ok:#3fb950; --bad:#f85149; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.5 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { padding:14px 24px; border-bottom:1px solid #2a323c; display:flex; gap:16px; align-items:baseline; }
  header h1 { font-size:18px; margin:0; } header a { color:var(--muted); font-size:13px; }
  main { display:grid; grid-template-columns: 380px 1fr; gap:20px; padding:20px 24px; }
  section { background:var(--panel); border:1px solid #2a323c; border-radius:8px; padding:16px; }
  label { display:block; font-size:12px; color:var(--muted); margin:10px 0 4px; }
  input, select, textarea { width:100%; background:#0d1117; color:var(--fg); border:1px solid #30363d; border-radius:6px; padding:8px; font:inherit; }
  textarea { min-height:110px; resize:vertical; }
  .row { display:flex; gap:10px; } .row > div { flex:1; }
  button { margin-top:14px; background:var(--accent); color:#00131c; border:0; border-radius:6px; padding:9px 16px; font-weight:600; cursor:pointer; }
  button.secondary { background:#30363d; color:var(--fg); }
  #output { white-space:pre-wrap; min-height:160px; font:15px/1.6 ui-monospace, monospace; }
  #status { font-size:13px; color:var(--muted); margin-bottom:10px; }
  #status.ok { color:var(--ok); } #status.bad { color:var(--bad); }
  table { border-collapse:collapse; margin-top:14px; font-size:13px; } td { padding:3px 14px 3px 0; } td:first-child { color:var(--muted); }
  #log { font:12px ui-monospace, monospace; color:var(--muted); max-height:180px; overflow:auto; margin-top:14px; }
</style>
</head>
<body>
<header><h1>Sluice console</h1><a href="/docs">API docs</a><a href="/openapi.json">openapi.json</a></header>
<main>
  <section>
    <form id="submit-form">
      <div class="row">
        <div><label for="provider">Provider</label><select id="provider"><option value="">(from the model)</option></select></div>
        <div><label for="model">Model</label><input id="model" value="default"></div>
      </div>
      <label for="prompt">Prompt</label>
      <textarea id="prompt">Hello! Who are you?</textarea>
      <div class="row">
        <div><label for="temperature">Temperature</label><input id="temperature" type="number" step="0.1" min="0" max="2" placeholder="default"></div>
        <div><label for="max_tokens">Max tokens</label><input id="max_tokens" type="number" min="1" placeholder="default"></div>
      </div>
      <label for="apikey">API key (if the gateway needs one)</label>
      <input id="apikey" type="password" autocomplete="off">
      <button type="submit" id="send">Submit</button>
    </form>
    <form id="follow-form">
      <label for="jobid">Follow a job by id</label>
      <input id="jobid" placeholder="job id">
      <button type="submit" class="secondary">Follow</button>
    </form>
  </section>
  <section>
    <div id="status">No job yet.</div>
    <div id="output"></div>
    <table id="metrics"></table>
    <div id="log"></div>
  </section>
</main>
<script>
const $ = (id) => document.getElementById(id);
let source = null;

function setStatus(text, cls) { const s = $('status'); s.textContent = text; s.className = cls || ''; }
function log(line) { const l = $('log'); l.textContent += line + '\n'; l.scrollTop = l.scrollHeight; }

async function loadProviders() {
  try {
    const r = await fetch('/v1/providers', { headers: authHeaders() });
    if (!r.ok) return;
    const body = await r.json();
    for (const p of (body.data || body.providers || [])) {
      const o = document.createElement('option'); o.value = p.name; o.textContent = p.name + ' (' + p.kind + ')';
      $('provider').appendChild(o);
    }
  } catch (e) { log('providers: ' + e); }
}

function authHeaders() {
  const k = $('apikey').value.trim();
  return k ? { 'Authorization': 'Bearer ' + k } : {};
}

function showMetrics(result) {
  const m = result.metrics || {};
  const rows = [
    ['status', result.status], ['provider / model', result.provider + ' / ' + result.model],
    ['tokens', m.input_tokens + ' in, ' + m.output_tokens + ' out (' + m.usage_source + ')'],
    ['cost', m.cost_usd == null ? 'n/a' : '$' + m.cost_usd.toFixed(6)],
    ['latency', m.latency_s == null ? 'n/a' : m.latency_s.toFixed(3) + ' s'],
    ['first token', m.time_to_first_token_s == null ? 'n/a' : m.time_to_first_token_s.toFixed(3) + ' s'],
    ['inter-token', m.inter_token_latency_s == null ? 'n/a' : (m.inter_token_latency_s * 1000).toFixed(1) + ' ms'],
    ['tokens/s', m.tokens_per_second == null ? 'n/a' : m.tokens_per_second.toFixed(1)],
    ['queue wait', m.queue_wait_s == null ? 'n/a' : m.queue_wait_s.toFixed(3) + ' s'],
    ['attempts', m.attempts],
  ];
  $('metrics').innerHTML = '';
  for (const [k, v] of rows) {
    const tr = document.createElement('tr');
    const a = document.createElement('td'); a.textContent = k;
    const b = document.createElement('td'); b.textContent = v;
    tr.append(a, b); $('metrics').appendChild(tr);
  }
}

function follow(id) {
  if (source) source.close();
  $('output').textContent = ''; $('metrics').innerHTML = '';
  setStatus('Job ' + id + ': waiting for events…');
  source = new EventSource('/v1/jobs/' + encodeURIComponent(id) + '/events');
  source.addEventListener('chat_started', (e) => {
    const d = JSON.parse(e.data).data;
    setStatus('Job ' + id + ': streaming from ' + d.provider + '/' + d.model + (d.attempt > 1 ? ' (attempt ' + d.attempt + ')' : ''));
  });
  source.addEventListener('chunk', (e) => {
    const chunk = JSON.parse(e.data).data;
    for (const c of (chunk.choices || [])) {
      if (c.delta && c.delta.content) $('output').textContent += c.delta.content;
      if (c.delta && c.delta.tool_calls) for (const t of c.delta.tool_calls) {
        if (t.function) $('output').textContent += (t.function.name ? '\n[tool call ' + t.function.name + '] ' : '') + (t.function.arguments || '');
      }
    }
  });
  source.addEventListener('chat_completion_response', (e) => {
    const d = JSON.parse(e.data).data;
    // A finished job's replay (or a batch job nobody followed) has no chunks: the response has the text.
    if (typeof d.chat_output === 'string' && d.chat_output.startsWith($('output').textContent)) $('output').textContent = d.chat_output;
    showMetrics(d);
  });
  source.addEventListener('chat_response_failure', (e) => {
    const err = JSON.parse(e.data).data.error || {};
    setStatus('Job ' + id + ' failed: ' + (err.message || 'unknown error'), 'bad');
  });
  source.addEventListener('chat_finished', (e) => {
    const s = JSON.parse(e.data).data.status;
    if (s === 'succeeded') setStatus('Job ' + id + ': done', 'ok');
    else if (!$('status').classList.contains('bad')) setStatus('Job ' + id + ': ' + s, 'bad');
    source.close(); source = null;
    fetch('/v1/jobs/' + encodeURIComponent(id), { headers: authHeaders() }).then(r => r.json()).then(j => { if (j.result) showMetrics(j.result); }).catch(() => {});
  });
  source.onerror = () => { if (source) log('event stream interrupted; the browser reconnects with Last-Event-ID'); };
}

async function submit(event) {
  if (event) event.preventDefault();
  const job = { model: $('model').value.trim() || 'default', messages: [{ role: 'user', content: $('prompt').value }], stream: true, parameters: {} };
  if ($('provider').value) job.provider = $('provider').value;
  if ($('temperature').value) job.parameters.temperature = Number($('temperature').value);
  if ($('max_tokens').value) job.parameters.max_tokens = Number($('max_tokens').value);
  setStatus('Submitting…');
  try {
    const r = await fetch('/v1/jobs', { method: 'POST', headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders()), body: JSON.stringify(job) });
    const body = await r.json();
    if (!r.ok) { setStatus((body.error && body.error.message) || ('HTTP ' + r.status), 'bad'); return; }
    $('jobid').value = body.id;
    log('submitted ' + body.id);
    follow(body.id);
  } catch (e) { setStatus('Cannot reach the gateway: ' + e, 'bad'); }
}

$('submit-form').addEventListener('submit', submit);
$('follow-form').addEventListener('submit', (e) => { e.preventDefault(); if ($('jobid').value.trim()) follow($('jobid').value.trim()); });
loadProviders();
const params = new URLSearchParams(location.search);
if (params.get('prompt')) $('prompt').value = params.get('prompt');
if (params.get('model')) $('model').value = params.get('model');
if (params.get('job')) follow(params.get('job'));
</script>
</body>
</html>
"""#
}
