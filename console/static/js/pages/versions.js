// Versions and aliases: publish the code now as a version, point an alias at one version and
// send a share of its calls to a second one with a slider.
import { call, fnPath } from "../api.js";
import { h, clear, messageBox, relativeTime, formatTime } from "../dom.js";

export function renderVersions(root, ctx) {
  const { name } = ctx;
  const msg = messageBox();
  const description = h("input", { id: "version-description", placeholder: "What changed (optional)", autocomplete: "off", "aria-label": "Version description" });
  const publish = h("button", { type: "button", class: "primary", id: "publish" }, "Publish version");
  const versionRows = h("tbody");
  const aliasRows = h("tbody");
  const aliasName = h("input", { id: "alias-name", placeholder: "live", autocomplete: "off", spellcheck: "false" });
  const primary = h("select", { id: "alias-version" });
  const second = h("select", { id: "alias-second" });
  const weight = h("input", { id: "alias-weight", type: "range", min: "0", max: "100", step: "1", value: "0", "aria-describedby": "alias-weight-text", disabled: true });
  const weightText = h("output", { id: "alias-weight-text", for: "alias-weight" });
  const saveAlias = h("button", { type: "submit", class: "primary", id: "save-alias" }, "Save alias");
  const aliasForm = h(
    "form",
    { class: "card", id: "alias-form" },
    h("h2", { text: "Set an alias" }),
    h("div", { class: "row" }, h("label", { for: "alias-name", text: "Alias" }), aliasName),
    h("div", { class: "row" }, h("label", { for: "alias-version", text: "Version" }), primary),
    h("div", { class: "row" }, h("label", { for: "alias-second", text: "Second version" }), second),
    h("div", { class: "row" }, h("label", { for: "alias-weight", text: "Its share" }), weight),
    h("p", { class: "help weight-text" }, weightText),
    saveAlias,
  );
  root.append(
    h("div", { class: "toolbar" }, description, publish),
    msg.el,
    h(
      "div",
      { class: "versions-layout" },
      h("section", { class: "card" }, h("h2", { text: "Versions" }), h("table", { class: "list", id: "versions" }, h("thead", {}, h("tr", {}, ["Version", "Description", "Code", "Published"].map((t) => h("th", { scope: "col", text: t })))), versionRows)),
      h("div", {}, h("section", { class: "card" }, h("h2", { text: "Aliases" }), h("table", { class: "list", id: "aliases" }, h("thead", {}, h("tr", {}, ["Alias", "Routes to"].map((t) => h("th", { scope: "col", text: t })))), aliasRows)), aliasForm),
    ),
  );

  let alive = true;
  let versions = [];
  const showWeight = () => {
    const on = second.value !== "";
    weight.disabled = !on;
    const w = on ? Number(weight.value) : 0;
    weightText.textContent = on ? `${w}% to version ${second.value}, ${100 - w}% to version ${primary.value}` : "all calls to the version";
  };
  const options = (select, withNone) => {
    const keep = select.value;
    clear(select);
    if (withNone) select.append(h("option", { value: "", text: "— none —" }));
    for (const v of versions) select.append(h("option", { value: v.version, text: `${v.version}${v.description ? ` · ${v.description}` : ""}` }));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  };

  async function load() {
    try {
      const [vs, as] = await Promise.all([call("GET", `${fnPath(name)}/versions`), call("GET", `${fnPath(name)}/aliases`)]);
      if (!alive) return;
      versions = vs.versions || [];
      clear(versionRows);
      for (const v of versions.slice().reverse()) {
        versionRows.append(h("tr", { "data-version": v.version }, h("td", { class: "mono", text: v.version }), h("td", { text: v.description || "—" }), h("td", { class: "mono small", title: v.code_sha256, text: v.code_sha256.slice(0, 12) }), h("td", { title: formatTime(v.created_at), text: relativeTime(v.created_at) })));
      }
      if (!versions.length) versionRows.append(h("tr", {}, h("td", { colspan: "4", class: "muted", text: "No version yet: publish the code as version 1." })));
      clear(aliasRows);
      for (const a of as.aliases || []) {
        const r = a.routing || {};
        const routes = r.version && r.weight ? `${a.version} (${Math.round((1 - r.weight) * 100)}%) · ${r.version} (${Math.round(r.weight * 100)}%)` : a.version;
        aliasRows.append(h("tr", { "data-alias": a.alias }, h("td", { class: "mono", text: a.alias }), h("td", { class: "mono", text: routes })));
      }
      if (!(as.aliases || []).length) aliasRows.append(h("tr", {}, h("td", { colspan: "2", class: "muted", text: "No alias yet." })));
      options(primary, false);
      options(second, true);
      showWeight();
    } catch (err) {
      if (alive) msg.error(err);
    }
  }

  publish.addEventListener("click", async () => {
    publish.disabled = true;
    msg.notice("Publishing…");
    try {
      const v = await call("POST", `${fnPath(name)}/versions`, { body: { description: description.value.trim() } });
      description.value = "";
      msg.notice(`Published version ${v.version}.`);
      await load();
    } catch (err) {
      msg.error(err);
    } finally {
      publish.disabled = false;
    }
  });
  second.addEventListener("change", showWeight);
  primary.addEventListener("change", showWeight);
  weight.addEventListener("input", showWeight);
  aliasForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const alias = aliasName.value.trim();
    if (!alias) {
      msg.error(new Error("alias: give the alias a name"));
      aliasName.focus();
      return;
    }
    const body = { version: primary.value };
    if (second.value) body.routing = { version: second.value, weight: Number(weight.value) / 100 };
    saveAlias.disabled = true;
    try {
      await call("PUT", `${fnPath(name)}/aliases/${encodeURIComponent(alias)}`, { body });
      msg.notice(`Alias ${alias} saved.`);
      await load();
    } catch (err) {
      msg.error(err);
    } finally {
      saveAlias.disabled = false;
    }
  });
  load();
  return () => {
    alive = false;
  };
}
