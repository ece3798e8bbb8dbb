# ruff: noqa: E501  (an HTML page, its lines are not Python)
"""The dashboard's single page (kept in Python so that no package-data setting is needed)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sluice</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;color:#222}
nav{width:260px;border-right:1px solid #ddd;height:100vh;overflow:auto;padding:8px}
nav div{padding:6px;cursor:pointer;border-radius:4px}nav div.on{background:#e8eefc}
main{flex:1;padding:12px 20px;overflow:auto;height:100vh;box-sizing:border-box}
.bar{width:400px;height:14px;background:#eee;border-radius:3px;display:inline-block}
.bar span{display:block;height:100%;background:#a23bcf;border-radius:3px}
.Healthy{color:#1a7f37}.Degraded{color:#c62828}.Paused{color:#b7791f}.Progressing{color:#1565c0}
table{border-collapse:collapse;margin:6px 0 14px}td,th{padding:2px 10px;text-align:left}
li.cur{font-weight:bold}li.done{color:#888}h3{margin:14px 0 4px}.err{color:#c62828}
</style></head><body>
<nav id="list"></nav>
<main><div id="error" class="err"></div><div id="detail">Select a Rollout.</div></main>
<script>
"use strict";
let selected = null;
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function table(head, rows) {
  const t = el("table"), tr = el("tr");
  head.forEach(h => tr.appendChild(el("th", h)));
  t.appendChild(tr);
  rows.forEach(r => { const row = el("tr"); r.forEach(c => row.appendChild(el("td", c))); t.appendChild(row); });
  return t;
}
const PHASE_COLOURS = {Successful: "#1a7f37", Failed: "#c62828", Error: "#b7791f"};
function chart(metric) {
  // The measurements over time (oldest left) against the limit, a dashed line; each
  // measurement is a dot in its verdict's colour, so a failure shows above the line.
  const ns = "http://www.w3.org/2000/svg", w = 300, h = 60, pad = 4;
  const points = metric.measurements.map(m => ({v: parseFloat(m.value), phase: m.phase || ""}))
    .filter(p => !isNaN(p.v));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "chart");
  const top = Math.max(...points.map(p => p.v), metric.limit || 0, 1e-9) * 1.2;
  const y = v => h - pad - (Math.max(v, 0) / top) * (h - 2 * pad);
  if (metric.limit !== null) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("class", "limit");
    line.setAttribute("x1", 0); line.setAttribute("x2", w);
    line.setAttribute("y1", y(metric.limit)); line.setAttribute("y2", y(metric.limit));
    line.setAttribute("stroke", "#c62828"); line.setAttribute("stroke-dasharray", "4");
    const tip = document.createElementNS(ns, "title"); tip.textContent = "limit " + metric.limit;
    line.appendChild(tip); svg.appendChild(line);
  }
  const step = points.length > 1 ? (w - 2 * pad) / (points.length - 1) : 0;
  const poly = document.createElementNS(ns, "polyline");
  poly.setAttribute("points", points.map((p, i) => (pad + i * step) + "," + y(p.v)).join(" "));
  poly.setAttribute("fill", "none"); poly.setAttribute("stroke", "#1565c0");
  svg.appendChild(poly);
  points.forEach((p, i) => {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("class", "measurement " + p.phase);
    dot.setAttribute("cx", pad + i * step); dot.setAttribute("cy", y(p.v)); dot.setAttribute("r", 2.5);
    dot.setAttribute("fill", PHASE_COLOURS[p.phase] || "#888");
    const tip = document.createElementNS(ns, "title"); tip.textContent = p.v + " " + p.phase;
    dot.appendChild(tip); svg.appendChild(dot);
  });
  return svg;
}
function render(d) {
  const out = el("div");
  const head = el("h2", d.namespace + "/" + d.name + " ");
  head.appendChild(el("span", d.phase, d.phase));
  out.appendChild(head);
  out.appendChild(el("div", d.message));
  if (d.abort) out.appendChild(el("div", "Aborted: " + d.abort.reason + ": " + d.abort.message, "err"));
  const weight = el("div");
  const bar = el("span", null, "bar"), fill = el("span");
  fill.style.width = d.weight + "%"; bar.appendChild(fill); weight.appendChild(bar);
  const label = el("span", " canary "); const num = el("b", d.weight + "%");
  num.id = "weight"; label.appendChild(num); label.appendChild(document.createTextNode(" / stable " + (100 - d.weight) + "%"));
  weight.appendChild(label); out.appendChild(weight);
  out.appendChild(el("h3", "Steps"));
  const steps = el("ol"); steps.start = 0; steps.id = "steps";
  d.steps.forEach((s, i) => steps.appendChild(el("li", (i === d.step ? "\\u25b6 " : "") + s,
    d.step === null || i > d.step ? "" : (i === d.step ? "cur" : "done"))));
  out.appendChild(steps);
  out.appendChild(el("h3", "Revisions"));
  out.appendChild(table(["role", "slot", "revision", "desired", "ready"],
    ["stable", "canary"].filter(r => d[r].revision).map(r =>
      [r, d[r].slot || "", d[r].revision, d[r].replicas ?? "", d[r].readyReplicas ?? ""])));
  out.appendChild(el("div", "Traffic: " + d.routers.join(", ")));
  d.analysis.forEach(run => {
    out.appendChild(el("h3", "Analysis " + run.name + ": " + (run.phase || "Pending")));
    run.metrics.forEach(m => {
      const last = m.measurements[m.measurements.length - 1] || {};
      const box = el("div"); box.className = "metric"; box.dataset.metric = m.name;
      box.appendChild(el("div", m.name + " " + m.phase + ": last " + (last.value ?? "-") + " (threshold " + (m.threshold || "-") + ") " + (last.message || "")));
      box.appendChild(chart(m)); out.appendChild(box);
    });
  });
  out.appendChild(el("h3", "Events"));
  out.appendChild(table(["time", "type", "reason", "message"],
    d.events.map(e => [(e.lastTimestamp || "").slice(11, 19), e.type, e.reason, e.message])));
  return out;
}
async function get(path) {
  const answer = await fetch(path, {cache: "no-store"});
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}
async function tick() {
  try {
    const items = await get("/api/rollouts");
    const list = document.getElementById("list");
    list.replaceChildren(...items.map(r => {
      const key = r.namespace + "/" + r.name;
      const item = el("div", key + "  " + r.phase + "  " + r.weight + "%", selected === key ? "on" : "");
      item.onclick = () => { selected = key; tick(); };
      return item;
    }));
    if (!selected && items.length) selected = items[0].namespace + "/" + items[0].name;
    if (selected) {
      const [ns, name] = selected.split("/");
      const d = await get("/api/rollout/" + encodeURIComponent(ns) + "/" + encodeURIComponent(name));
      document.getElementById("detail").replaceChildren(render(d));
    }
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
  }
}
window.sluiceLoadedAt = Date.now();
tick(); setInterval(tick, 1000);
</script></body></html>
"""
