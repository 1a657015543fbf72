// The functions of the key's namespace: runtime, memory, last modified; search by name,
// runtime or description.
import { api } from "../api.js";
import { h, clear, messageBox, relativeTime, formatTime } from "../dom.js";

export function renderFunctions(root, ctx) {
  document.title = "Functions · Nimbus console";
  const msg = messageBox();
  const search = h("input", {
    type: "search",
    id: "search",
    placeholder: "Search by name, runtime or description",
    "aria-label": "Search functions",
    autocomplete: "off",
  });
  const count = h("span", { class: "muted", "aria-live": "polite" });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "list", id: "functions" },
    h("caption", { class: "visually-hidden", text: "Functions" }),
    h("thead", {}, h("tr", {}, ["Name", "Runtime", "Memory", "Last modified"].map((t) => h("th", { scope: "col", text: t })))),
    body,
  );
  const empty = h("div", { class: "empty", hidden: true });
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", { text: "Functions" }),
      h("a", { class: "button primary", href: "#/new", id: "create-function" }, "Create function"),
    ),
    h("div", { class: "toolbar" }, search, count),
    msg.el,
    h("div", { class: "table-wrap" }, table),
    empty,
  );

  let all = [];
  let alive = true;
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const rows = all.filter(
      (f) => !q || [f.name, f.runtime, f.description || ""].some((v) => v.toLowerCase().includes(q)),
    );
    clear(body);
    for (const f of rows) {
      const href = `#/functions/${encodeURIComponent(f.name)}/code`;
      body.append(
        h(
          "tr",
          { "data-name": f.name },
          h("td", {}, h("a", { href, class: "fn-link", text: f.name }), f.description ? h("div", { class: "muted small", text: f.description }) : null),
          h("td", {}, h("span", { class: `badge rt-${f.runtime.replace(/[^a-z0-9]/g, "")}`, text: f.runtime })),
          h("td", { text: `${f.memory_mb} MB` }),
          h("td", { title: formatTime(f.updated_at), text: relativeTime(f.updated_at) }),
        ),
      );
    }
    count.textContent = all.length ? `${rows.length} of ${all.length}` : "";
    table.hidden = rows.length === 0;
    empty.hidden = rows.length !== 0;
    clear(empty);
    if (!all.length) {
      empty.append(
        h("p", { text: "No functions yet." }),
        h("p", {}, h("a", { href: "#/new", text: "Create one from a template" }), " — Python or Node.js, deployed in a second."),
      );
    } else if (!rows.length) {
      empty.append(h("p", { text: `No function matches “${search.value.trim()}”.` }));
    }
  };
  search.addEventListener("input", show);

  msg.notice("Loading functions…");
  api
    .listFunctions()
    .then((res) => {
      if (!alive) return;
      msg.clear();
      all = (res.functions || []).slice().sort((a, b) => a.name.localeCompare(b.name));
      show();
    })
    .catch((err) => alive && msg.error(err));
  search.focus();
  return () => {
    alive = false;
  };
}
