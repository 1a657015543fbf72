// A function's recent log lines (as text), filtered by request id; follow polls for new ones.
import { api } from "../api.js";
import { h, clear, messageBox } from "../dom.js";

const SHOW = 500;
const PAGE = 2000;
const MAX_PAGES = 10;
const FOLLOW_MS = 2000;
const WINDOWS = [
  ["15 minutes", 15 * 60],
  ["1 hour", 3600],
  ["6 hours", 6 * 3600],
  ["24 hours", 24 * 3600],
];

export function renderLogs(root, ctx) {
  const { name } = ctx;
  const msg = messageBox();
  const requestId = h("input", { id: "log-request-id", type: "search", placeholder: "Filter by request id", autocomplete: "off", spellcheck: "false", "aria-label": "Request id", value: (ctx.query && ctx.query.get("request_id")) || "" });
  const windowSelect = h("select", { id: "log-window", "aria-label": "Time range" }, WINDOWS.map(([t, s]) => h("option", { value: String(s), text: `Last ${t}` })));
  windowSelect.value = "3600";
  const refresh = h("button", { type: "button", id: "log-refresh" }, "Refresh");
  const follow = h("input", { type: "checkbox", id: "log-follow" });
  const summary = h("p", { class: "muted small", id: "log-summary", "aria-live": "polite" });
  const lines = h("ol", { class: "log-lines", id: "log-lines", "aria-label": "Log lines" });
  root.append(
    h(
      "form",
      { class: "toolbar", id: "log-form" },
      requestId,
      windowSelect,
      refresh,
      h("label", { class: "check" }, follow, " Follow"),
    ),
    msg.el,
    summary,
    h("div", { class: "log-box" }, lines),
  );

  let alive = true;
  let shown = [];
  let edge = { ts: "", count: 0 }; // the newest timestamp read and how many lines had it
  let timer = null;
  let generation = 0;

  const lineEl = (l) =>
    h(
      "li",
      { class: `log-line ${l.stream === "stderr" ? "stderr" : ""}` },
      h("time", { datetime: l.timestamp, text: l.timestamp.replace("T", " ").replace("Z", "") }),
      l.request_id
        ? h("button", { type: "button", class: "rid", title: `Show only ${l.request_id}`, text: l.request_id.slice(0, 8), onclick: () => { requestId.value = l.request_id; load(); } })
        : h("span", { class: "rid none", text: "—" }),
      h("span", { class: "msg", text: l.message }),
    );

  // Reads from `since` on, page after page; a page starts at the last timestamp read, so the
  // lines of that millisecond already seen are skipped.
  async function readFrom(since, seen) {
    const out = [];
    let from = since;
    let skip = seen;
    for (let page = 0; page < MAX_PAGES; page++) {
      const res = await api.logs(name, { requestId: requestId.value.trim(), since: from, limit: PAGE });
      let got = res.lines || [];
      if (skip.ts) {
        let n = 0;
        got = got.filter((l) => !(l.timestamp === skip.ts && n++ < skip.count));
      }
      out.push(...got);
      if (!res.truncated || !got.length) break;
      const last = got[got.length - 1].timestamp;
      from = last;
      skip = { ts: last, count: out.filter((l) => l.timestamp === last).length };
    }
    return out;
  }

  const newestEdge = (all, prev) => {
    if (!all.length) return prev;
    const ts = all[all.length - 1].timestamp;
    const count = all.filter((l) => l.timestamp === ts).length + (prev.ts === ts ? prev.count : 0);
    return { ts, count };
  };

  const render = (scroll) => {
    clear(lines);
    for (const l of shown) lines.append(lineEl(l));
    const rid = requestId.value.trim();
    summary.textContent = shown.length
      ? `${shown.length} line${shown.length === 1 ? "" : "s"}${shown.length >= SHOW ? ` (the newest ${SHOW})` : ""}${rid ? ` of request ${rid}` : ""}`
      : rid
        ? `No lines of request ${rid} in this time range.`
        : "No log lines in this time range.";
    if (scroll) lines.parentElement.scrollTop = lines.parentElement.scrollHeight;
  };

  async function load() {
    const my = ++generation;
    msg.clear();
    summary.textContent = "Loading…";
    const since = new Date(Date.now() - Number(windowSelect.value) * 1000).toISOString();
    try {
      const all = await readFrom(since, { ts: "", count: 0 });
      if (!alive || my !== generation) return;
      shown = all.slice(-SHOW);
      edge = newestEdge(all, { ts: "", count: 0 });
      if (!edge.ts) edge = { ts: since, count: 0 };
      render(true);
    } catch (err) {
      if (alive && my === generation) {
        summary.textContent = "";
        msg.error(err);
      }
    }
  }

  async function poll() {
    timer = null;
    if (!alive || !follow.checked) return;
    const my = generation;
    try {
      const more = await readFrom(edge.ts, edge);
      if (alive && my === generation && more.length) {
        edge = newestEdge(more, edge);
        shown = shown.concat(more).slice(-SHOW);
        const box = lines.parentElement;
        const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
        render(atBottom);
      }
    } catch (err) {
      if (alive) msg.error(err);
    }
    if (alive && follow.checked) timer = setTimeout(poll, FOLLOW_MS);
  }

  root.querySelector("#log-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  refresh.addEventListener("click", load);
  windowSelect.addEventListener("change", load);
  requestId.addEventListener("search", load);
  follow.addEventListener("change", () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (follow.checked) timer = setTimeout(poll, FOLLOW_MS);
  });
  load();
  return () => {
    alive = false;
    if (timer) clearTimeout(timer);
  };
}
