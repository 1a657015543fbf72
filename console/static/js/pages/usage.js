// Usage of the key's namespace: requests and GB-seconds per function and day, this month so far
// (or the days asked for), with a bar per day.
import { call } from "../api.js";
import { h, clear, messageBox } from "../dom.js";

const SVG = "http://www.w3.org/2000/svg";

function bars(days) {
  const W = 900;
  const H = 140;
  const max = Math.max(1e-9, ...days.map((d) => d.gbs));
  const bw = W / Math.max(1, days.length);
  const root = document.createElementNS(SVG, "svg");
  root.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  root.setAttribute("class", "chart");
  root.setAttribute("role", "img");
  root.setAttribute("aria-label", "GB-seconds per day");
  days.forEach((d, i) => {
    const hgt = (H * d.gbs) / max;
    const r = document.createElementNS(SVG, "rect");
    for (const [k, v] of Object.entries({ x: i * bw + 2, y: H - hgt, width: Math.max(1, bw - 4), height: hgt, class: "s-inv" })) r.setAttribute(k, String(v));
    const t = document.createElementNS(SVG, "title");
    t.textContent = `${d.day}: ${d.gbs.toFixed(3)} GB-s, ${d.requests} requests`;
    r.append(t);
    root.append(r);
    const label = document.createElementNS(SVG, "text");
    for (const [k, v] of Object.entries({ x: i * bw + bw / 2, y: H + 14, class: "axis", "text-anchor": "middle" })) label.setAttribute(k, String(v));
    label.textContent = d.day.slice(8);
    root.append(label);
  });
  return root;
}

export function renderUsage(root) {
  document.title = "Usage · Nimbus console";
  const msg = messageBox();
  const from = h("input", { id: "usage-from", type: "date", "aria-label": "From" });
  const to = h("input", { id: "usage-to", type: "date", "aria-label": "To" });
  const show = h("button", { type: "submit", id: "usage-show" }, "Show");
  const totals = h("p", { id: "usage-totals", class: "muted" });
  const chart = h("figure", { class: "card chart-card" });
  const rows = h("tbody");
  const form = h("form", { class: "toolbar" }, h("label", { for: "usage-from", text: "From" }), from, h("label", { for: "usage-to", text: "To" }), to, show);
  root.append(
    h("div", { class: "page-head" }, h("h1", { text: "Usage" })),
    form,
    msg.el,
    totals,
    chart,
    h("div", { class: "table-wrap" }, h("table", { class: "list", id: "usage" }, h("thead", {}, h("tr", {}, ["Day", "Function", "Version", "Requests", "GB-s"].map((t) => h("th", { scope: "col", text: t })))), rows)),
  );
  let alive = true;
  async function load() {
    msg.clear();
    const q = new URLSearchParams();
    if (from.value) q.set("from", from.value);
    if (to.value) q.set("to", to.value);
    try {
      const res = await call("GET", `/v1/usage?${q}`);
      if (!alive) return;
      const list = res.rows || [];
      totals.textContent = `${res.from} to ${res.to}: ${res.total_requests} requests, ${Number(res.total_gb_seconds).toFixed(4)} GB-s`;
      const byDay = new Map();
      for (let d = new Date(`${res.from}T00:00:00Z`); d <= new Date(`${res.to}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1)) {
        byDay.set(d.toISOString().slice(0, 10), { day: d.toISOString().slice(0, 10), gbs: 0, requests: 0 });
      }
      clear(rows);
      for (const r of list) {
        const d = byDay.get(r.day);
        if (d) {
          d.gbs += Number(r.gb_seconds);
          d.requests += Number(r.requests);
        }
        rows.append(h("tr", { "data-function": r.function }, h("td", { text: r.day }), h("td", { text: r.function }), h("td", { class: "mono", text: r.version || "$LATEST" }), h("td", { text: String(r.requests) }), h("td", { text: Number(r.gb_seconds).toFixed(4) })));
      }
      if (!list.length) rows.append(h("tr", {}, h("td", { colspan: "5", class: "muted", text: "No calls in this range." })));
      clear(chart);
      chart.append(h("figcaption", {}, h("strong", { text: "GB-seconds per day" })), bars([...byDay.values()]));
    } catch (err) {
      if (alive) msg.error(err);
    }
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  load();
  return () => {
    alive = false;
  };
}
