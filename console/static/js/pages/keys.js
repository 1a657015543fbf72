// API keys (admin keys only): list, create (the key is shown once), revoke.
import { call } from "../api.js";
import { h, clear, messageBox, relativeTime, formatTime } from "../dom.js";

export function renderKeys(root) {
  document.title = "API keys · Nimbus console";
  const msg = messageBox();
  const rows = h("tbody");
  const namespace = h("input", { id: "key-namespace", autocomplete: "off", spellcheck: "false", placeholder: "team-a", required: true });
  const description = h("input", { id: "key-description", autocomplete: "off", placeholder: "ci" });
  const admin = h("input", { id: "key-admin", type: "checkbox" });
  const create = h("button", { type: "submit", class: "primary", id: "key-create" }, "Create key");
  const shown = h("div", { class: "card new-key", id: "new-key", hidden: true });
  const form = h(
    "form",
    { class: "card", id: "key-form" },
    h("h2", { text: "Create a key" }),
    h("div", { class: "row" }, h("label", { for: "key-namespace", text: "Namespace" }), namespace),
    h("div", { class: "row" }, h("label", { for: "key-description", text: "Description" }), description),
    h("label", { class: "check" }, admin, " Admin (may manage keys and quotas of every namespace)"),
    h("div", { class: "actions" }, create),
  );
  root.append(
    h("div", { class: "page-head" }, h("h1", { text: "API keys" })),
    msg.el,
    shown,
    h(
      "div",
      { class: "versions-layout" },
      h("section", { class: "card" }, h("table", { class: "list", id: "keys" }, h("thead", {}, h("tr", {}, ["Key id", "Namespace", "Description", "Created", ""].map((t) => h("th", { scope: "col", text: t })))), rows)),
      form,
    ),
  );
  let alive = true;
  async function load() {
    try {
      const res = await call("GET", "/v1/keys");
      if (!alive) return;
      clear(rows);
      for (const k of res.keys || []) {
        const revoke = h("button", { type: "button", class: "ghost small", "aria-label": `Revoke ${k.key_id}` }, "Revoke");
        revoke.addEventListener("click", async () => {
          if (!window.confirm(`Revoke key ${k.key_id} of ${k.namespace}? Calls with it fail within seconds.`)) return;
          try {
            await call("DELETE", `/v1/keys/${encodeURIComponent(k.key_id)}`);
            msg.notice(`Revoked ${k.key_id}.`);
            load();
          } catch (err) {
            msg.error(err);
          }
        });
        rows.append(
          h(
            "tr",
            { "data-key-id": k.key_id },
            h("td", { class: "mono", text: k.key_id }),
            h("td", {}, k.namespace, k.admin ? h("span", { class: "badge admin", text: "admin" }) : null),
            h("td", { text: k.description || "—" }),
            h("td", { title: formatTime(k.created_at), text: relativeTime(k.created_at) }),
            h("td", {}, revoke),
          ),
        );
      }
    } catch (err) {
      if (alive) msg.error(err);
    }
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    create.disabled = true;
    msg.clear();
    try {
      const k = await call("POST", "/v1/keys", { body: { namespace: namespace.value.trim(), description: description.value.trim(), admin: admin.checked } });
      clear(shown);
      shown.hidden = false;
      shown.append(
        h("strong", { text: `New key for ${k.namespace} (${k.key_id}): copy it now, it is not shown again.` }),
        h("pre", { class: "output", id: "new-key-value", text: k.api_key }),
      );
      description.value = "";
      load();
    } catch (err) {
      msg.error(err);
    } finally {
      create.disabled = false;
    }
  });
  load();
  return () => {
    alive = false;
  };
}
