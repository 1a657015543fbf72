// One function: its header and the Code, Test, Logs, Metrics, Versions and Configuration tabs.
import { api } from "../api.js";
import { h, clear, messageBox, relativeTime, formatTime } from "../dom.js";
import { renderCode } from "./code.js";
import { renderTest } from "./test.js";
import { renderLogs } from "./logs.js";
import { renderMetrics } from "./metrics.js";
import { renderVersions } from "./versions.js";
import { renderConfig } from "./config.js";

const TABS = [
  ["code", "Code", renderCode],
  ["test", "Test", renderTest],
  ["logs", "Logs", renderLogs],
  ["metrics", "Metrics", renderMetrics],
  ["versions", "Versions", renderVersions],
  ["config", "Configuration", renderConfig],
];

export function renderFunction(root, ctx, name, tab) {
  const entry = TABS.find((t) => t[0] === tab);
  if (!entry) {
    ctx.navigate(`#/functions/${encodeURIComponent(name)}/code`);
    return null;
  }
  document.title = `${name} · ${entry[1]} · Nimbus console`;
  const msg = messageBox();
  const facts = h("div", { class: "facts" });
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Function" },
    TABS.map(([id, title]) =>
      h("a", {
        href: `#/functions/${encodeURIComponent(name)}/${id}`,
        class: id === tab ? "tab active" : "tab",
        "aria-current": id === tab ? "page" : false,
        id: `tab-${id}`,
        text: title,
      }),
    ),
  );
  const body = h("section", { class: "tab-body", "aria-labelledby": `tab-${tab}` });
  root.append(
    h("div", { class: "crumbs" }, h("a", { href: "#/functions", text: "Functions" }), " / ", h("span", { text: name })),
    h("div", { class: "page-head" }, h("h1", { class: "fn-name", text: name }), facts),
    msg.el,
    tabs,
    body,
  );

  let alive = true;
  let inner = null;
  const showFacts = (f) => {
    clear(facts);
    facts.append(
      h("span", { class: `badge rt-${f.runtime.replace(/[^a-z0-9]/g, "")}`, text: f.runtime }),
      h("span", { class: "fact" }, "handler ", h("code", { text: f.handler })),
      h("span", { class: "fact", text: `${f.memory_mb} MB · ${f.timeout_s} s` }),
      h("span", { class: "fact", title: formatTime(f.updated_at), text: `modified ${relativeTime(f.updated_at)}` }),
    );
  };
  api
    .getFunction(name)
    .then((f) => {
      if (!alive) return;
      showFacts(f);
      inner = entry[2](body, { ...ctx, name, fn: f, refresh: showFacts });
    })
    .catch((err) => alive && msg.error(err));
  return () => {
    alive = false;
    if (typeof inner === "function") inner();
  };
}
