// The commissioning page: live view and setup aids, the verdict stream (server-sent events), and
// threshold tuning on the last inspected frames. No build step, nothing fetched from elsewhere.
"use strict";
const $ = (s) => document.querySelector(s);
const fmt = (v, d = 3) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
let verdictCount = 0, aidsTimer = null, tuneTimer = null, current = null;

function show(tab) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("on", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("on", s.id === "tab-" + tab));
  // the stream runs (and the server encodes) only while the live view is on screen
  $("#live").src = tab === "live" ? "/live.mjpg?t=" + Date.now() : "";
  clearInterval(aidsTimer);
  if (tab === "live") { aids(); aidsTimer = setInterval(aids, 1000); }
  if (tab === "tuning") loadTuning(true);
}
document.querySelectorAll("nav button").forEach((b) => (b.onclick = () => show(b.dataset.tab)));

function badge(id, text, cls) { const b = $(id); b.textContent = text; b.className = "badge " + (cls || ""); }

function showStatus(s) {
  $("#station").textContent = s.station;
  badge("#b-state", s.state + (s.stalled ? " (" + s.stalled + ")" : ""), s.state === "running" && !s.stalled ? "ok" : "warn");
  badge("#b-camera", s.camera_connected ? "camera ok" : "camera lost: " + (s.camera_error || "?"), s.camera_connected ? "ok" : "bad");
  const broker = s.broker_connected ? (s.refused_pending ? "broker refusing " + s.refused_pending : "broker ok") : "broker down";
  if (s.broker_configured === false) badge("#b-broker", "no broker", "");
  else badge("#b-broker", broker, s.broker_connected && !s.refused_pending ? "ok" : "bad");
  badge("#b-outbox", "outbox " + s.outbox_depth, s.outbox_depth > 100 ? "warn" : "ok");
  if (s.model) badge("#b-model", "model " + s.model.version + " " + s.model.sha256.slice(0, 8) + " on " + s.model.backend, "ok");
}

function addVerdict(v) {
  verdictCount += 1;
  $("#verdict-count").textContent = verdictCount;
  const regions = v.regions || [];
  const tr = document.createElement("tr");
  tr.className = v.verdict;
  for (const cell of [v.seq, v.verdict, fmt(v.score), fmt(v.threshold), v.part_id || "-", regions.length,
                      regions.length ? regions[0].area : "-", fmt(v.latency_ms, 0), v.source || "-"]) {
    const td = document.createElement("td"); td.textContent = cell; tr.appendChild(td);
  }
  const body = $("#verdicts");
  body.insertBefore(tr, body.firstChild);
  while (body.children.length > 50) body.removeChild(body.lastChild);
  $("#last-verdict").textContent = v.verdict + " #" + v.seq;
}

const events = new EventSource("/events");
events.addEventListener("verdict", (e) => addVerdict(JSON.parse(e.data)));
events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));

async function aids() {
  const r = await fetch("/api/aids");
  if (!r.ok) return;
  const a = await r.json();
  $("#focus").textContent = fmt(a.focus, 0);
  $("#white").textContent = (a.clipped_white * 100).toFixed(1) + "%";
  $("#black").textContent = (a.clipped_black * 100).toFixed(1) + "%";
  $("#clip").textContent = (a.clip_limit * 100).toFixed(0) + "%";
  $("#frame-size").textContent = a.width + " x " + a.height;
  const c = $("#histogram"), g = c.getContext("2d"), top = Math.max(...a.histogram, 1e-6);
  g.clearRect(0, 0, c.width, c.height);
  a.histogram.forEach((v, i) => {
    g.fillStyle = i === 0 || i === a.histogram.length - 1 ? "#e74c3c" : "#9fb3d1";
    const h = (v / top) * c.height;
    g.fillRect(i * 4, c.height - h, 3, h);
  });
}

async function loadTuning(reset) {
  // reset: the current thresholds on a fresh copy of the last frames; else the sliders' on the same copy
  const q = reset ? "?refresh=1" : "?threshold=" + $("#threshold").value + "&pixel_threshold=" + $("#pixel").value;
  const r = await fetch("/api/tuning" + q);
  const t = await r.json();
  current = t;
  if (reset) {
    const scores = t.items.map((i) => i.score).concat(t.held_out_scores.normal, t.held_out_scores.defect, [t.threshold]);
    const lo = Math.min(...scores), hi = Math.max(...scores), pad = (hi - lo) * 0.05 || 1;
    const slider = $("#threshold");
    slider.min = lo - pad; slider.max = hi + pad; slider.step = "any";  // scores have no natural step
    slider.value = t.threshold;
    $("#pixel").value = t.pixel_threshold;
  }
  $("#threshold-now").textContent = fmt(t.threshold);
  $("#pixel-now").textContent = fmt(t.pixel_threshold, 2);
  $("#threshold-value").textContent = fmt(t.proposed.threshold);
  $("#pixel-value").textContent = fmt(t.proposed.pixel_threshold, 2);
  const ng = t.items.filter((i) => i.verdict === "NG").length;
  $("#replayed").textContent = t.items.length;
  $("#would-ng").textContent = ng;
  $("#changed").textContent = t.items.filter((i) => i.verdict !== i.verdict_then).length;
  const h = t.held_out;
  $("#heldout").textContent = h.normal_total || h.defect_total
    ? h.normal_rejected + " of " + h.normal_total + " normals rejected, " + h.defect_escaped + " of " + h.defect_total + " defects let through"
      + (h.regions_counted ? " (NG needing a region, as threshold.min_defect_area asks)" : "")
    : "none recorded in this calibration";
  const cards = $("#replay");
  cards.textContent = "";
  const levels = "?threshold=" + t.proposed.threshold + "&pixel_threshold=" + t.proposed.pixel_threshold;
  for (const i of t.items.slice().reverse()) {
    const card = document.createElement("div");
    card.className = "card " + i.verdict + (i.verdict !== i.verdict_then ? " changed" : "");
    card.dataset.seq = i.seq;
    const img = document.createElement("img");
    img.loading = "lazy"; img.src = "/api/replay/" + i.seq + ".jpg" + levels; img.alt = "frame " + i.seq;
    const text = document.createElement("div");
    text.textContent = "#" + i.seq + " " + i.verdict + " (was " + i.verdict_then + ") score " + fmt(i.score) +
      ", " + i.regions + " region(s)" + (i.part_id ? ", part " + i.part_id : "");
    card.append(img, text);
    cards.appendChild(card);
  }
}
const later = () => { clearTimeout(tuneTimer); tuneTimer = setTimeout(() => loadTuning(false), 150); };
$("#threshold").addEventListener("input", later);
$("#pixel").addEventListener("input", later);

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return r.json();
}
async function runningModel() {
  const r = await fetch("/api/status");
  const s = await r.json();
  return s.model ? s.model.sha256 : null;
}
// after a change: wait until the service runs the new version's model, then show its figures
async function waitFor(before, text) {
  $("#message").textContent = text + " (the model reloads...)";
  let changed = false;
  for (let i = 0; i < 60 && !changed; i++) {
    await new Promise((ok) => setTimeout(ok, 500));
    changed = (await runningModel()) !== before;
  }
  $("#message").textContent = text + (changed ? " (running)" : " (not loaded yet: the service log says why)");
  loadTuning(true);
}
$("#apply").onclick = async () => {
  const before = await runningModel();
  const res = await post("/api/apply", { threshold: Number($("#threshold").value), pixel_threshold: Number($("#pixel").value), who: $("#who").value });
  if (!res.ok) { $("#message").textContent = "refused: " + res.error; return; }
  await waitFor(before, "applied: calibration " + res.version);
};
$("#refresh").onclick = () => loadTuning(true);
$("#rollback").onclick = async () => {
  const before = await runningModel();
  const res = await post("/api/rollback", { who: $("#who").value });
  if (!res.ok) { $("#message").textContent = "refused: " + res.error; return; }
  await waitFor(before, "rolled back to " + res.version);
};
show("live");
