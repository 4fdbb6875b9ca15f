// mlp-service dashboard: plain JavaScript, no build step. Talks to the /v1 API with fetch(); the job page follows
// GET /v1/jobs/{id}/events through a streamed fetch (EventSource cannot send the Authorization header).
"use strict";

const KEY = "mlp_api_key";          // sessionStorage: the key lives as long as this tab
const COLORS = ["#2f6fde", "#e8590c", "#1f9d55", "#ae3ec9", "#d64545", "#0c8599", "#f08c00", "#495057"];
const view = document.getElementById("view");
let cleanups = [];                   // what the current page must stop when the user leaves it

// -- API -------------------------------------------------------------------------------------------------
function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  if (opts.json !== undefined) {
    opts.body = JSON.stringify(opts.json);
    opts.headers["Content-Type"] = "application/json";
    delete opts.json;
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (!r.ok) {
    const detail = body && body.detail !== undefined ? body.detail : text;
    const err = new Error(r.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
    err.status = r.status;
    throw err;
  }
  return body;
}

// Server-sent events over fetch: calls onEvent(name, data) per event until the stream ends or is aborted.
async function streamEvents(jobId, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId) h["Last-Event-ID"] = lastId;
      const r = await fetch("/v1/jobs/" + jobId + "/events", { headers: h, signal });
      if (!r.ok) throw Object.assign(new Error("events: " + r.status), { status: r.status });
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let name = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("id:")) lastId = line.slice(3).trim();
          }
          if (data) onEvent(name, JSON.parse(data));
          if (name === "end") return;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e.status && e.status < 500) throw e;
    }
    await new Promise(res => setTimeout(res, 1000));   // dropped: resume after the last epoch seen
  }
}

// -- small helpers ---------------------------------------------------------------------------------------
const esc = s => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
  c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(d)) : esc(v));
const mfmt = v => v === null || v === undefined ? "–" : Number(v).toPrecision(4);   // a metric value
const short = id => id ? id.slice(0, 8) : "";
const secs = s => s === null || s === undefined ? "–" : s < 90 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min";
const badge = s => `<span class="badge ${esc(s)}" data-status="${esc(s)}">${esc(s)}</span>`;
const bar = (f, wide) => `<span class="bar${wide ? " wide" : ""}"><span style="width:${(100 * (f || 0)).toFixed(1)}%"></span></span>`;
function showError(e) { view.innerHTML = `<div class="card error">${esc(e.message)}${e.status === 401 ? "\nEnter an API key above." : ""}</div>`; }
function metricName(task) { return task === "regression" ? "mae" : "accuracy"; }

function chart(el, title, seriesDefs, data, opts) {
  const width = Math.max(el.clientWidth - 34, 300);   // inside the card's padding
  const series = [{ label: "epoch" }].concat(seriesDefs.map((s, i) => ({
    label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, dash: s.dash,
    points: { show: true, size: 5 }, spanGaps: true })));
  const u = new uPlot(Object.assign({ title, width, height: 240, series,
    scales: { x: { time: false } }, axes: [{ label: "epoch" }, {}] }, opts || {}), data, el);
  return u;
}

// -- pages -----------------------------------------------------------------------------------------------
async function jobsPage() {
  view.innerHTML = `<h1>Jobs</h1><div class="card"><div class="row"><button id="compare" class="secondary" disabled>Compare selected</button>
    <span class="muted">tick two or more jobs to overlay their curves</span></div><div id="jobs"></div></div>`;
  const selected = new Set();
  const btn = document.getElementById("compare");
  btn.onclick = () => { location.hash = "#/compare/" + [...selected].join(","); };
  async function refresh() {
    const page = await api("/v1/jobs?limit=100");
    const rows = page.items.map(j => {
      const m = j.metrics || {}, metric = m.val_accuracy ?? m.train_accuracy ?? m.val_mae ?? m.train_mae;
      const p = j.progress;
      return `<tr data-job="${j.id}"><td><input type="checkbox" data-id="${j.id}" ${selected.has(j.id) ? "checked" : ""}></td>
        <td class="mono"><a href="#/jobs/${j.id}">${short(j.id)}</a></td><td>${badge(j.status)}</td>
        <td>${bar(p.fraction)} <span class="muted">${(100 * p.fraction).toFixed(0)}%</span></td>
        <td class="num">${p.epoch}/${p.epochs}</td><td class="num">${j.status === "running" ? secs(p.eta_seconds) : "–"}</td>
        <td class="num">${fmt(m.val_loss ?? m.train_loss)}</td><td class="num">${fmt(metric)}</td>
        <td class="muted">${esc((j.created_at || "").replace("T", " ").slice(0, 19))}</td></tr>`;
    }).join("");
    document.getElementById("jobs").innerHTML = page.items.length ? `<table><thead><tr><th></th><th>job</th><th>status</th>
      <th>progress</th><th class="num">epoch</th><th class="num">eta</th><th class="num">loss</th><th class="num">metric</th>
      <th>created</th></tr></thead><tbody>${rows}</tbody></table>` : `<p class="muted">No jobs yet: POST /v1/jobs, or <code>mlp-service train</code>.</p>`;
    for (const box of document.querySelectorAll("#jobs input[type=checkbox]")) {
      box.onchange = () => { box.checked ? selected.add(box.dataset.id) : selected.delete(box.dataset.id); btn.disabled = selected.size < 2; };
    }
  }
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 2000);
  cleanups.push(() => clearInterval(timer));
}

async function jobPage(id) {
  const job = await api("/v1/jobs/" + id);
  const ds = await api("/v1/datasets/" + job.dataset_id).catch(() => null);
  const task = ds ? ds.task : "classification", mname = metricName(task);
  view.innerHTML = `<h1>Job <span class="mono">${short(id)}</span> <span id="status">${badge(job.status)}</span></h1>
    <div class="card"><div id="bar">${bar(job.progress.fraction, true)}</div>
      <div class="stats"><div><b id="epoch">–</b><span>epoch</span></div><div><b id="batch">–</b><span>minibatch</span></div>
      <div><b id="eta">–</b><span>time left</span></div><div><b id="best">–</b><span>best epoch</span></div>
      <div><b>${ds ? `<a href="#/datasets/${ds.id}">${esc(ds.name)}</a>` : "–"}</b><span>data set (${esc(task)})</span></div>
      <div><b id="model">–</b><span>model</span></div></div><div id="error" class="error"></div></div>
    <div class="grid"><div class="card chart" id="loss"></div><div class="card chart" id="metric"></div></div>
    <div class="card chart" id="lr" hidden></div><div id="after"></div>`;
  const xs = [], cols = { train_loss: [], val_loss: [], ["train_" + mname]: [], ["val_" + mname]: [], lr: [] };
  const lossChart = chart(document.getElementById("loss"), "loss: train vs validation",
    [{ label: "train_loss" }, { label: "val_loss" }], [[], [], []]);
  const metricChart = chart(document.getElementById("metric"), mname + ": train vs validation",
    [{ label: "train_" + mname }, { label: "val_" + mname }], [[], [], []]);
  let lrChart = null;
  function setProgress(p, epochsDone) {
    document.querySelector("#bar .bar > span").style.width = (100 * p.fraction).toFixed(1) + "%";
    document.getElementById("epoch").textContent = (p.epoch ?? epochsDone) + " / " + job.progress.epochs;
    if (p.batch !== undefined) document.getElementById("batch").textContent = p.batch === null ? "–" : p.batch + " / " + p.batches;
    document.getElementById("eta").textContent = secs(p.eta_seconds);
  }
  function onEpoch(m) {
    xs.push(m.epoch);
    for (const k of Object.keys(cols)) cols[k].push(m[k] ?? null);
    lossChart.setData([xs, cols.train_loss, cols.val_loss]);
    metricChart.setData([xs, cols["train_" + mname], cols["val_" + mname]]);
    if (m.lr !== undefined) {
      const el = document.getElementById("lr");
      if (!lrChart) { el.hidden = false; lrChart = chart(el, "learning rate", [{ label: "lr", color: COLORS[2] }], [[], []]); }
      lrChart.setData([xs, cols.lr]);
    }
    document.getElementById("epoch").textContent = m.epoch + " / " + job.progress.epochs;
    view.dataset.points = xs.length;               // how many epochs are drawn (for tests and curious users)
  }
  function onEnd(j) {
    Object.assign(job, j);
    document.getElementById("status").innerHTML = badge(j.status);
    setProgress(Object.assign({}, j.progress, { batch: null }), j.progress.epoch);
    document.getElementById("best").textContent = j.best_epoch ?? "–";
    document.getElementById("model").innerHTML = j.model_id ? `<span class="mono">${short(j.model_id)}</span>` : "–";
    if (j.error) document.getElementById("error").textContent = j.error;
    if (j.status === "succeeded" && j.model_id) modelPanel(j, ds);
  }
  setProgress(job.progress, job.progress.epoch);
  const ctl = new AbortController();
  cleanups.push(() => ctl.abort());
  streamEvents(id, (name, data) => {
    if (name === "epoch") onEpoch(data);
    else if (name === "progress") setProgress(data);
    else if (name === "end") onEnd(data);
  }, ctl.signal).catch(showError);
}

// The model of a finished job: a predict form, and for classification a confusion matrix on labelled rows.
function modelPanel(job, ds) {
  const features = ds ? ds.feature_names : [];
  const example = {};
  for (const c of (ds && ds.columns) || []) {
    if (c.type === "ignored") continue;
    example[c.name] = c.type === "numeric" ? Number((c.mean ?? 0).toFixed(3)) : (c.top && c.top.length ? (c.top[0].value ?? c.top[0][0] ?? c.top[0]) : null);
  }
  if (!Object.keys(example).length) for (const f of features) example[f] = 0;
  const cls = ds && ds.task === "classification";
  document.getElementById("after").innerHTML = `<div class="grid">
    <div class="card"><h2>Predict</h2><textarea id="pinput" rows="7">${esc(JSON.stringify({ records: [example] }, null, 1))}</textarea>
      <div class="row"><button id="predict">Predict</button><span class="muted">body of POST /v1/models/${short(job.model_id)}…/predict</span></div>
      <pre id="poutput" class="mono"></pre></div>
    ${cls ? `<div class="card"><h2>Confusion matrix</h2><p class="muted">Labelled rows (a CSV with a header and the
      <b>${esc(ds.target || "target")}</b> column, e.g. your validation file) are predicted by the model and counted here.</p>
      <div class="row"><input type="file" id="cmfile" accept=".csv,text/csv"><input id="cmtarget" value="${esc(ds.target || "")}" placeholder="target column" size="10">
      <button id="cmrun">Confusion matrix</button></div><div id="cm"></div></div>` : ""}</div>`;
  document.getElementById("predict").onclick = async () => {
    const out = document.getElementById("poutput");
    try { out.textContent = JSON.stringify(await api(`/v1/models/${job.model_id}/predict`, { method: "POST", json: JSON.parse(document.getElementById("pinput").value) }), null, 1); out.className = "mono"; }
    catch (e) { out.textContent = e.message; out.className = "mono error"; }
  };
  if (cls) document.getElementById("cmrun").onclick = () => confusion(job, ds).catch(e => {
    document.getElementById("cm").innerHTML = `<p class="error">${esc(e.message)}</p>`; });
}

function parseCSV(text) {
  const rows = []; let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") { if (c === "\r" && text[i + 1] === "\n") i++; row.push(field); rows.push(row); row = []; field = ""; }
    else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows.filter(r => r.length > 1 || r[0] !== "");
}

async function confusion(job, ds) {
  const file = document.getElementById("cmfile").files[0];
  if (!file) throw new Error("choose a CSV file first");
  const rows = parseCSV(await file.text()), head = rows.shift();
  const target = document.getElementById("cmtarget").value.trim(), t = head.indexOf(target);
  if (t < 0) throw new Error(`the file has no column '${target}' (columns: ${head.join(", ")})`);
  const numeric = new Set(((ds.columns || []).filter(c => c.type === "numeric")).map(c => c.name));
  const records = rows.map(r => { const o = {}; head.forEach((h, i) => { if (i !== t) {
    const v = r[i]; o[h] = v === "" || v === undefined ? null : (numeric.has(h) || !ds.columns) && !Number.isNaN(Number(v)) ? Number(v) : v; } }); return o; });
  const truth = rows.map(r => r[t]);
  const pred = (await api(`/v1/models/${job.model_id}/predict`, { method: "POST", json: { records } })).predictions;
  const classes = ds.classes.map(String), index = new Map(classes.map((c, i) => [c, i]));
  const m = classes.map(() => classes.map(() => 0));
  let right = 0;
  truth.forEach((y, i) => { const a = index.get(String(y)), b = index.get(String(pred[i]));
    if (a !== undefined && b !== undefined) m[a][b]++; if (String(y) === String(pred[i])) right++; });
  const max = Math.max(1, ...m.flat());
  const cell = v => `<td style="background:rgba(47,111,222,${(0.08 + 0.85 * v / max).toFixed(2)});color:${v / max > 0.5 ? "#fff" : "inherit"}">${v}</td>`;
  document.getElementById("cm").innerHTML = `<table class="cm" id="cmtable"><thead><tr><th>true \\ predicted</th>${classes.map(c => `<th>${esc(c)}</th>`).join("")}</tr></thead>
    <tbody>${m.map((r, i) => `<tr><th>${esc(classes[i])}</th>${r.map(cell).join("")}</tr>`).join("")}</tbody></table>
    <p>accuracy <b id="cmacc">${(right / truth.length).toFixed(3)}</b> on ${truth.length} rows</p>`;
}

async function comparePage(ids) {
  view.innerHTML = `<h1>Compare ${ids.length} jobs</h1><div class="grid"><div class="card chart" id="closs"></div><div class="card chart" id="cmetric"></div></div>
    <div class="card" id="clegend"></div>`;
  const jobs = await Promise.all(ids.map(id => api("/v1/jobs/" + id)));
  const ds = await api("/v1/datasets/" + jobs[0].dataset_id).catch(() => null);
  const mname = metricName(ds ? ds.task : "classification");
  async function draw() {
    const hist = await Promise.all(ids.map(id => api(`/v1/jobs/${id}/metrics`)));
    const maxEpoch = Math.max(1, ...hist.map(h => h.items.length ? h.items[h.items.length - 1].epoch : 0));
    const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
    const col = (h, k) => xs.map(e => { const m = h.items.find(r => r.epoch === e); return m && m[k] !== undefined ? m[k] : null; });
    const series = (k, dash) => ids.map((id, i) => ({ label: short(id) + " " + k, color: COLORS[i % COLORS.length], dash }));
    for (const [el, keys] of [["closs", ["train_loss", "val_loss"]], ["cmetric", ["train_" + mname, "val_" + mname]]]) {
      const box = document.getElementById(el); box.innerHTML = "";
      chart(box, keys[1].replace("val_", "") + " (train dashed, validation solid)",
        [...series(keys[0], [6, 4]), ...series(keys[1])], [xs, ...hist.map(h => col(h, keys[0])), ...hist.map(h => col(h, keys[1]))]);
    }
    document.getElementById("clegend").innerHTML = `<table><thead><tr><th>job</th><th>status</th><th>network</th><th>optimizer</th>
      <th class="num">batch</th><th class="num">epochs</th><th class="num">best epoch</th></tr></thead><tbody>${jobs.map((j, i) =>
      `<tr><td class="mono"><a href="#/jobs/${j.id}" style="color:${COLORS[i % COLORS.length]}">${short(j.id)}</a></td><td>${badge(j.status)}</td>
      <td class="mono">${short(j.network_id)}</td><td>${esc(j.params.optimizer.type)} ${esc(j.params.optimizer.learning_rate)}</td>
      <td class="num">${j.params.batch_size}</td><td class="num">${j.progress.epoch}/${j.progress.epochs}</td><td class="num">${fmt(j.best_epoch)}</td></tr>`).join("")}</tbody></table>`;
    return jobs;
  }
  await draw();
  const timer = setInterval(async () => {
    const fresh = await Promise.all(ids.map(id => api("/v1/jobs/" + id))).catch(() => jobs);
    if (fresh.some((j, i) => j.progress.epoch !== jobs[i].progress.epoch || j.status !== jobs[i].status)) {
      jobs.splice(0, jobs.length, ...fresh); await draw();
    }
  }, 2000);
  cleanups.push(() => clearInterval(timer));
}

async function datasetsPage() {
  const page = await api("/v1/datasets?limit=100");
  view.innerHTML = `<h1>Data sets</h1><div class="card">${page.items.length ? `<table><thead><tr><th>name</th><th>id</th><th>task</th>
    <th class="num">rows</th><th class="num">features</th><th>classes</th></tr></thead><tbody>${page.items.map(d =>
    `<tr><td><a href="#/datasets/${d.id}">${esc(d.name)}</a></td><td class="mono">${short(d.id)}</td><td>${esc(d.task)}</td>
    <td class="num">${d.n_samples}</td><td class="num">${d.n_features}</td><td>${esc((d.classes || []).slice(0, 6).join(", "))}</td></tr>`).join("")}
    </tbody></table>` : `<p class="muted">No data sets yet.</p>`}</div>`;
}

async function datasetPage(id) {
  const d = await api("/v1/datasets/" + id);
  const cols = d.columns || d.feature_names.map(n => ({ name: n }));
  const top = c => (c.top || []).slice(0, 4).map(t => Array.isArray(t) ? t[0] : (t.value ?? JSON.stringify(t))).join(", ");
  view.innerHTML = `<h1>${esc(d.name)}</h1><div class="card"><div class="stats">
    <div><b>${d.n_samples}</b><span>rows</span></div><div><b>${d.n_features}</b><span>features</span></div>
    <div><b>${esc(d.task)}</b><span>task</span></div><div><b>${esc(d.target ?? "–")}</b><span>target</span></div>
    <div><b>${d.n_dropped}</b><span>rows dropped</span></div><div><b>${esc((d.classes || []).join(", ") || "–")}</b><span>classes</span></div></div></div>
    <div class="card"><h2>Columns</h2><table id="columns"><thead><tr><th>name</th><th>type</th><th class="num">missing</th><th class="num">min</th>
    <th class="num">max</th><th class="num">mean</th><th class="num">std</th><th>categories</th></tr></thead><tbody>${cols.map(c =>
    `<tr><td>${esc(c.name)}</td><td>${esc(c.type ?? "–")}</td><td class="num">${fmt(c.missing)}</td><td class="num">${fmt(c.min)}</td>
    <td class="num">${fmt(c.max)}</td><td class="num">${fmt(c.mean)}</td><td class="num">${fmt(c.std)}</td>
    <td>${c.n_categories ? c.n_categories + ": " + esc(top(c)) : ""}</td></tr>`).join("")}</tbody></table>
    ${d.columns ? "" : `<p class="muted">This data set has no column profile (uploaded as arrays).</p>`}</div>`;
}

// -- sweeps ----------------------------------------------------------------------------------------------
const DIMENSIONS = ["hidden_layers", "units", "activation", "dropout", "optimizer", "learning_rate", "batch_size",
  "weight_decay", "epochs", "l1", "clip_norm"];      // service/sweeps/search.py's order
const INT_DIMS = new Set(["hidden_layers", "units", "batch_size", "epochs"]);
const dimKey = name => name.startsWith("units") ? "units" : name;

// The searched parameters of a sweep, each with how its axis is drawn (fixed values of the space are skipped):
// "log" (a log-scale range: base 10 for rates, 2 for sizes), "category" (a list of choices, evenly spaced),
// "discrete" (a short integer range) or "linear". On category and discrete axes the points are spread a little so
// equal values do not hide each other.
function searchedParams(sweep) {
  const space = (sweep.request && sweep.request.space) || {};
  const names = [];
  for (const t of sweep.trials) for (const k of Object.keys(t.params)) if (!names.includes(k)) names.push(k);
  const order = k => DIMENSIONS.indexOf(dimKey(k)) * 100 + (parseInt(k.split("_")[1], 10) || 0);
  return names.filter(k => { const d = space[dimKey(k)];
      return Array.isArray(d) ? new Set(d).size > 1 : d !== null && typeof d === "object"; })
    .sort((a, b) => order(a) - order(b)).map(k => {
      const d = space[dimKey(k)], values = sweep.trials.map(t => t.params[k]).filter(v => v !== undefined);
      if (values.some(v => typeof v === "string")) return { name: k, kind: "category", cats: [...new Set(Array.isArray(d) ? d : values)] };
      if (Array.isArray(d)) return { name: k, kind: "category", cats: [...new Set(d)].sort((a, b) => a - b) };
      if (!Array.isArray(d) && d.log) return { name: k, kind: "log", base: INT_DIMS.has(dimKey(k)) ? 2 : 10, lo: d.low, hi: d.high };
      const lo = Array.isArray(d) ? Math.min(...d) : d.low, hi = Array.isArray(d) ? Math.max(...d) : d.high;
      if (INT_DIMS.has(dimKey(k)) && hi - lo <= 6) return { name: k, kind: "discrete", lo, hi };
      return { name: k, kind: "linear", lo, hi };
    });
}

const spread = n => ((n * 7919) % 11 - 5) * 0.03;    // a fixed small offset per trial number
const sci = v => v === 0 ? "0" : Math.abs(v) < 0.01 || Math.abs(v) >= 1e4 ? v.toExponential(0) : String(+v.toPrecision(3));

// A tick label of the metric axis: two decimals for values like accuracies and losses, fewer digits for large ones.
const yTick = v => v === null ? "" : Math.abs(v) >= 1e5 ? v.toExponential(1) : Math.abs(v) >= 100 ? String(Math.round(v)) : v.toFixed(2);

// Whether the sweep's space searches anything (a range, or a list of two or more choices), trials or not.
const searchesSomething = sweep => Object.entries((sweep.request && sweep.request.space) || {}).some(([k, d]) =>
  DIMENSIONS.includes(k) && (Array.isArray(d) ? new Set(d).size > 1 : d !== null && typeof d === "object"));

// What the trial table says next to a trial: why it failed or was cancelled, what a pending one waits for, that a
// complete one's model was deleted; for a pruned trial whose job went on after the verdict (small trials often
// finish first), how far the job got.
function trialNote(t) {
  if (t.status !== "pruned" && t.error) return t.error;
  if (t.status === "pruned" && t.job_epoch != null && t.job_epoch > t.epoch)
    return `job ${t.job_status || ""} at epoch ${t.job_epoch} (pruned at ${t.epoch})`;
  return "";
}

// One scatter of the metric against one parameter: complete trials filled, pruned hollow, the best ringed.
function scatter(el, dim, sweep, yOf) {
  const pts = [];
  for (const t of sweep.trials) {
    const raw = t.params[dim.name], y = yOf(t);
    if (raw === undefined || y === null || y === undefined) continue;
    let x = dim.kind === "category" ? dim.cats.indexOf(raw) : Number(raw);
    if (dim.kind === "category" || dim.kind === "discrete") x += spread(t.number);
    pts.push({ x, y, t });
  }
  pts.sort((a, b) => a.x - b.x);
  const col = pred => pts.map(p => pred(p.t) ? p.y : null);
  const data = [pts.map(p => p.x), col(t => t.status === "complete"), col(t => t.status === "pruned"),
    col(t => t.number === sweep.best_trial)];
  const ys = pts.length ? pts.map(p => p.y) : [0, 1];  // no finished trial yet: an empty chart
  const lo = Math.min(...ys), hi = Math.max(...ys), pad = Math.max((hi - lo) * 0.08, 0.01);
  const x = { time: false };
  const axis = { label: dim.name, size: 36, values: (u, vals) => vals.map(v => v === null ? "" : sci(v)) };
  if (dim.kind === "log") {                          // the space's range, ticks at the powers of the base
    const margin = Math.pow(dim.hi / dim.lo, 0.04);
    Object.assign(x, { distr: 3, log: dim.base, range: () => [dim.lo / margin, dim.hi * margin] });
    axis.splits = (u, i, min, max) => {
      const out = [];
      for (let e = Math.ceil(Math.log(min) / Math.log(dim.base) - 1e-9); Math.pow(dim.base, e) <= max * (1 + 1e-9); e++) out.push(Math.pow(dim.base, e));
      return out;
    };
  }
  else if (dim.kind === "category") {
    x.range = () => [-0.5, dim.cats.length - 0.5];
    Object.assign(axis, { splits: () => dim.cats.map((_, i) => i), values: (u, vals) => vals.map(i => dim.cats[i] ?? "") });
  } else if (dim.kind === "discrete") {
    x.range = () => [dim.lo - 0.5, dim.hi + 0.5];
    const ticks = Array.from({ length: dim.hi - dim.lo + 1 }, (_, i) => dim.lo + i);
    Object.assign(axis, { splits: () => ticks, values: (u, vals) => vals.map(String) });
  } else {
    const w = Math.max((dim.hi - dim.lo) * 0.05, 1e-9);
    x.range = () => [dim.lo - w, dim.hi + w];
  }
  const dot = (color, fill, size, width) => ({ stroke: color, paths: () => null,
    points: { show: true, size, width, stroke: color, fill } });
  const series = [{ label: dim.name }, Object.assign({ label: "complete" }, dot(COLORS[0], COLORS[0] + "b3", 8, 1)),
    Object.assign({ label: "pruned" }, dot(COLORS[1], "#ffffff", 8, 2)),
    Object.assign({ label: "best" }, dot(COLORS[2], "transparent", 16, 2.5))];
  const width = Math.max(el.clientWidth - 20, 220);
  const u = new uPlot({ title: dim.name + (dim.kind === "log" ? " (log scale)" : ""), width, height: 210, series,
    legend: { show: false }, cursor: { drag: { x: false, y: false }, points: { show: false } },
    scales: { x, y: { range: () => [lo - pad, hi + pad] } },
    axes: [axis, { label: sweep.metric, values: (u, vals) => vals.map(yTick),
      // wide enough for the longest tick label, so labels like 6000.00 never run into the rotated axis title
      size: (u, vals) => 30 + 7 * Math.max(4, ...(vals || []).map(v => String(v).length)) }] }, data, el);
  el.uplot = u;                                       // what is drawn, for tests: el.uplot.data
  Object.assign(el.dataset, { param: dim.name, scale: dim.kind, points: pts.length,
    complete: data[1].filter(v => v !== null).length, pruned: data[2].filter(v => v !== null).length });
  return u;
}

async function sweepsPage() {
  const page = await api("/v1/sweeps?limit=100");
  view.innerHTML = `<h1>Sweeps</h1><div class="card">${page.items.length ? `<table id="sweeps"><thead><tr><th>sweep</th><th>status</th>
    <th>strategy</th><th>metric</th><th class="num">trials</th><th class="num">complete</th><th class="num">pruned</th>
    <th class="num">best</th><th>created</th></tr></thead><tbody>${page.items.map(s => `<tr data-sweep="${s.id}">
    <td><a href="#/sweeps/${s.id}">${esc(s.name || short(s.id))}</a></td><td>${badge(s.status)}</td><td>${esc(s.strategy)}</td>
    <td>${esc(s.metric)} <span class="muted">${s.direction === "maximize" ? "max" : "min"}</span></td>
    <td class="num">${Object.values(s.counts).reduce((a, b) => a + b, 0)}${s.max_trials ? " / " + s.max_trials : ""}</td>
    <td class="num">${s.counts.complete || 0}</td><td class="num">${s.counts.pruned || 0}</td><td class="num">${mfmt(s.best_value)}</td>
    <td class="muted">${esc((s.created_at || "").replace("T", " ").slice(0, 19))}</td></tr>`).join("")}</tbody></table>`
    : `<p class="muted">No sweeps yet: POST /v1/sweeps, <code>client.sweep(...)</code> or <code>mlp-service sweep</code>.</p>`}</div>`;
}

async function sweepPage(id) {
  const [first, list] = await Promise.all([api("/v1/sweeps/" + id), api("/v1/sweeps?limit=100")]);
  view.innerHTML = `<div class="row"><h1 style="margin:0">Sweep <span id="sweepname"></span> <span id="status"></span></h1>
    <select id="sweepsel" aria-label="sweep" style="margin-left:auto">${list.items.map(s => `<option value="${s.id}" ${s.id === id ? "selected" : ""}>
    ${esc(s.name || short(s.id))} · ${esc(s.strategy)} · ${esc(s.status)}</option>`).join("")}</select></div>
    <div class="card"><div class="stats" id="sstats"></div><div id="reason" class="muted"></div></div>
    <div class="card"><div class="row" style="margin-top:0"><h2 style="margin:0">${esc(first.metric)} against each parameter</h2>
    <span class="key"><i class="dot complete"></i>complete <i class="dot pruned"></i>pruned (at the epoch it was stopped) <i class="dot best"></i>best</span></div>
    <div class="grid3" id="scatters"></div></div>
    <div class="grid31"><div class="card"><h2>Trials, best first</h2><div id="trials"></div></div>
    <div class="card"><h2>Parameter importances</h2><div id="importances"></div></div></div>`;
  document.getElementById("sweepsel").onchange = ev => { location.hash = "#/sweeps/" + ev.target.value; };
  let charts = [], drawn = "";
  const stopped = new Map();                          // pruned trial's job -> the metric at the epoch it was stopped
  async function draw() {
    const s = await api("/v1/sweeps/" + id);
    await Promise.all(s.trials.filter(t => t.status === "pruned" && t.job_id && !stopped.has(t.job_id)).map(async t => {
      const h = await api(`/v1/jobs/${t.job_id}/metrics?since_epoch=${t.epoch - 1}`);
      const m = h.items.find(r => r.epoch === t.epoch);
      stopped.set(t.job_id, m && m[s.metric] !== undefined ? m[s.metric] : null);
    }));
    const yOf = t => t.status === "complete" ? t.value : t.status === "pruned" ? stopped.get(t.job_id) ?? null : null;
    const done = s.trials.filter(t => yOf(t) !== null && yOf(t) !== undefined);
    document.getElementById("sweepname").textContent = s.name || short(s.id);
    document.getElementById("status").innerHTML = badge(s.status);
    const option = document.querySelector(`#sweepsel option[value="${id}"]`);
    if (option) option.textContent = `${s.name || short(s.id)} · ${s.strategy} · ${s.status}`;
    const best = s.trials.find(t => t.number === s.best_trial);
    document.getElementById("sstats").innerHTML = `<div><b>${esc(s.strategy)}</b><span>strategy</span></div>
      <div><b>${s.trials.length}${s.max_trials ? " / " + s.max_trials : ""}</b><span>trials</span></div>
      <div><b>${s.counts.complete || 0}</b><span>complete</span></div><div><b>${s.counts.pruned || 0}</b><span>pruned</span></div>
      <div><b>${(s.counts.running || 0) + (s.counts.pending || 0)}</b><span>running</span></div>
      <div id="sfailed"><b>${s.counts.failed || 0}</b><span>failed</span></div>
      ${s.counts.cancelled ? `<div><b>${s.counts.cancelled}</b><span>cancelled</span></div>` : ""}
      <div><b>${mfmt(s.best_value)}</b><span>best ${esc(s.metric)} (${s.direction === "maximize" ? "max" : "min"})</span></div>
      <div><b>${best ? `<a href="#/jobs/${best.job_id}">#${best.number}</a>` : "–"}</b><span>best trial</span></div>
      <div><b>${s.best_model_id ? `<span class="mono">${short(s.best_model_id)}</span>` : "–"}</b><span>best model</span></div>`;
    document.getElementById("reason").textContent = s.reason || "";
    const sig = s.trials.map(t => t.number + t.status + (t.status === "pruned" ? t.job_status : "")).join() + s.best_trial;
    if (sig !== drawn) {
      drawn = sig;
      for (const u of charts) u.destroy();
      const box = document.getElementById("scatters");
      const dims = searchedParams(s), drawable = dims.length && done.length ? dims : [];
      box.innerHTML = drawable.length ? drawable.map((d, i) => `<div class="scatter" id="sc${i}"></div>`).join("")
        : `<p class="muted" id="noscatter">${!searchesSomething(s) ? "Nothing is searched: every parameter of the space is fixed."
          : s.status === "running" ? "No trial has finished yet: a scatter per searched parameter appears as trials end."
          : "No trial completed or was pruned: nothing to draw (see the trials below)."}</p>`;
      charts = drawable.map((d, i) => scatter(document.getElementById("sc" + i), d, s, yOf));
      view.dataset.trials = done.length;             // trials drawn as points (for tests and curious users)
      document.getElementById("trials").innerHTML = `<table id="trialtable"><thead><tr><th class="num">rank</th><th class="num">#</th>
        <th>status</th><th class="num">${esc(s.metric)}</th><th class="num">epoch</th><th>parameters</th><th>note</th></tr></thead><tbody>${s.trials.map(t =>
        `<tr><td class="num">${t.rank ?? ""}</td><td class="num">${t.job_id ? `<a href="#/jobs/${t.job_id}">${t.number}</a>` : t.number}</td>
        <td>${badge(t.status)}</td><td class="num">${mfmt(yOf(t))}</td><td class="num">${t.epoch}</td>
        <td class="mono params">${dims.map(d => t.params[d.name] === undefined ? "" : `${esc(d.name)}=${fmt(t.params[d.name], 3)}`).filter(Boolean).join(" ")}</td>
        <td class="note muted">${esc(trialNote(t))}</td></tr>`).join("")}</tbody></table>`;
      const imp = Object.entries(s.importances || {}).sort((a, b) => b[1] - a[1]);
      document.getElementById("importances").innerHTML = imp.length ? `<table class="imp">${imp.map(([k, v]) =>
        `<tr><td>${esc(k)}</td><td style="width:50%"><span class="bar wide"><span style="width:${(100 * v).toFixed(1)}%"></span></span></td>
        <td class="num">${v.toFixed(3)}</td></tr>`).join("")}</table>` : `<p class="muted">Optuna computes them from two complete trials on.</p>`;
    }
    return s;
  }
  const s = await draw();
  if (s.status === "running") {
    const timer = setInterval(async () => {
      const now = await draw().catch(() => null);
      if (now && now.status !== "running") clearInterval(timer);
    }, 1500);
    cleanups.push(() => clearInterval(timer));
  }
  cleanups.push(() => { for (const u of charts) u.destroy(); });
}

// -- routing ---------------------------------------------------------------------------------------------
async function route() {
  for (const stop of cleanups) stop();
  cleanups = [];
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    if (parts[0] === "jobs" && parts[1]) await jobPage(parts[1]);
    else if (parts[0] === "compare" && parts[1]) await comparePage(parts[1].split(",").filter(Boolean));
    else if (parts[0] === "sweeps" && parts[1]) await sweepPage(parts[1]);
    else if (parts[0] === "sweeps") await sweepsPage();
    else if (parts[0] === "datasets" && parts[1]) await datasetPage(parts[1]);
    else if (parts[0] === "datasets") await datasetsPage();
    else await jobsPage();
  } catch (e) { showError(e); }
}

document.getElementById("keyform").onsubmit = ev => {
  ev.preventDefault();
  const input = document.getElementById("apikey");
  if (input.value) sessionStorage.setItem(KEY, input.value); else sessionStorage.removeItem(KEY);
  input.value = ""; input.placeholder = sessionStorage.getItem(KEY) ? "key set for this tab" : "API key (kept for this tab only)";
  route();
};
if (sessionStorage.getItem(KEY)) document.getElementById("apikey").placeholder = "key set for this tab";
window.addEventListener("hashchange", route);
route();
