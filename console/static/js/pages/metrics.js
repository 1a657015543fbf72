// A function's metrics per minute: invocations and errors, duration p50/p99, cold starts and
// throttles, as small SVG charts (drawn with DOM calls: no inline style, no library).
import { fnPath, call } from "../api.js";
import { h, clear, messageBox } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WINDOWS = [
  ["Last hour", 60],
  ["Last 3 hours", 180],
  ["Last 24 hours", 1440],
];

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function title(text) {
  const t = document.createElementNS(SVG, "title");
  t.textContent = text;
  return t;
}

const W = 560;
const H = 150;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function hhmm(iso) {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// One chart: series = [{label, cls, values, kind: "bar" | "line"}], over buckets' start times.
function chart(name, unit, buckets, series) {
  const n = buckets.length;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (iw * i) / Math.max(1, n);
  const y = (v) => PAD.top + ih - (ih * v) / max;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": name });
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f), class: "grid" }));
    const label = svg("text", { x: PAD.left - 6, y: y(max * f) + 4, class: "axis", "text-anchor": "end" });
    label.textContent = `${+(max * f).toFixed(2)}`;
    root.append(label);
  }
  for (const [i, anchor] of [[0, "start"], [Math.floor(n / 2), "middle"], [n - 1, "end"]]) {
    if (i < 0 || !buckets[i]) continue;
    const at = anchor === "start" ? x(i) : anchor === "end" ? x(i + 1) : x(i) + iw / n / 2;
    const label = svg("text", { x: at, y: H - 6, class: "axis", "text-anchor": anchor });
    label.textContent = hhmm(buckets[i].start);
    root.append(label);
  }
  const bars = series.filter((s) => s.kind === "bar");
  const bw = Math.max(1, iw / Math.max(1, n) - 1);
  bars.forEach((s, k) => {
    const w = bw / bars.length;
    s.values.forEach((v, i) => {
      if (!v) return;
      root.append(
        svg("rect", { x: x(i) + k * w, y: y(v), width: Math.max(0.8, w), height: Math.max(0, y(0) - y(v)), class: s.cls }, title(`${hhmm(buckets[i].start)} ${s.label}: ${v}${unit}`)),
      );
    });
  });
  for (const s of series.filter((s) => s.kind === "line")) {
    const pts = s.values.map((v, i) => `${x(i) + bw / 2},${y(v)}`).join(" ");
    root.append(svg("polyline", { points: pts, class: s.cls }, title(s.label)));
  }
  const total = (s) => s.values.reduce((a, b) => a + b, 0);
  const peak = (s) => Math.max(0, ...s.values);
  return h(
    "figure",
    { class: "card chart-card" },
    h("figcaption", {}, h("strong", { text: name }), h("span", { class: "legend" }, series.map((s) => h("span", { class: `key ${s.cls}` }, `${s.label} ${s.kind === "bar" ? total(s) : `peak ${peak(s).toFixed(1)}`}${unit}`)))),
    root,
  );
}

export function renderMetrics(root, ctx) {
  const { name } = ctx;
  const msg = messageBox();
  const select = h("select", { id: "metrics-window", "aria-label": "Time range" }, WINDOWS.map(([t, m]) => h("option", { value: String(m), text: t })));
  const refresh = h("button", { type: "button", id: "metrics-refresh" }, "Refresh");
  const grid = h("div", { class: "charts", id: "charts" });
  root.append(h("div", { class: "toolbar" }, select, refresh), msg.el, grid);
  let alive = true;
  async function load() {
    msg.clear();
    try {
      const res = await call("GET", `${fnPath(name)}/metrics?minutes=${select.value}`);
      if (!alive) return;
      const b = res.buckets || [];
      const num = (k) => b.map((x) => Number(x[k] || 0));
      clear(grid);
      grid.append(
        chart("Invocations and errors", "", b, [
          { label: "invocations", cls: "s-inv", values: num("invocations"), kind: "bar" },
          { label: "errors", cls: "s-err", values: num("errors"), kind: "bar" },
        ]),
        chart("Duration", " ms", b, [
          { label: "p50", cls: "s-p50", values: num("duration_p50_ms"), kind: "line" },
          { label: "p99", cls: "s-p99", values: num("duration_p99_ms"), kind: "line" },
        ]),
        chart("Cold starts and throttles", "", b, [
          { label: "cold starts", cls: "s-cold", values: num("cold_starts"), kind: "bar" },
          { label: "throttles", cls: "s-thr", values: num("throttles"), kind: "bar" },
        ]),
        chart("Memory used", " MB", b, [{ label: "used", cls: "s-mem", values: num("max_memory_used_mb"), kind: "line" }]),
      );
    } catch (err) {
      if (alive) msg.error(err);
    }
  }
  select.addEventListener("change", load);
  refresh.addEventListener("click", load);
  load();
  return () => {
    alive = false;
  };
}
