// Create a function from a template: pick one, name it, deploy; then its code page opens.
import { api } from "../api.js";
import { h, messageBox } from "../dom.js";
import { TEMPLATES } from "../templates.js";
import { zipTexts, toBase64 } from "../zip.js";
import { saveEvents } from "./events.js";

export function renderCreate(root, ctx) {
  document.title = "Create function · Nimbus console";
  const msg = messageBox();
  const name = h("input", { id: "fn-name", name: "name", required: true, autocomplete: "off", spellcheck: "false", placeholder: "hello", "aria-describedby": "fn-name-help" });
  const memory = h(
    "select",
    { id: "fn-memory", name: "memory" },
    [128, 256, 512, 1024].map((m) => h("option", { value: String(m), text: `${m} MB` })),
  );
  const choices = TEMPLATES.map((t, i) =>
    h(
      "label",
      { class: "template" },
      h("input", { type: "radio", name: "template", value: t.id, checked: i === 0 }),
      h("span", { class: "template-body" }, h("strong", { text: t.title }), h("span", { class: "muted", text: t.description }), h("code", { class: "small", text: `${t.runtime} · ${t.handler}` })),
    ),
  );
  const button = h("button", { type: "submit", class: "primary", id: "create" }, "Create and deploy");
  const form = h(
    "form",
    { class: "card form", id: "create-form" },
    h("fieldset", {}, h("legend", { text: "Template" }), h("div", { class: "templates" }, choices)),
    h("label", { for: "fn-name", text: "Function name" }),
    name,
    h("p", { id: "fn-name-help", class: "help", text: "Up to 64 letters, digits, “-” or “_”, starting with a letter." }),
    h("label", { for: "fn-memory", text: "Memory" }),
    memory,
    msg.el,
    h("div", { class: "actions" }, button, h("a", { href: "#/functions", class: "button ghost", text: "Cancel" })),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fname = name.value.trim();
    if (!fname) {
      msg.error(new Error("name: give the function a name"));
      name.focus();
      return;
    }
    const template = TEMPLATES.find((t) => t.id === form.elements.template.value) || TEMPLATES[0];
    button.disabled = true;
    msg.notice(`Creating ${fname} from “${template.title}”…`);
    try {
      const zip = await zipTexts(template.files);
      const created = await api.createFunction({
        name: fname,
        runtime: template.runtime,
        handler: template.handler,
        memory_mb: Number(memory.value),
        description: `From the console's ${template.title} template`,
        code: { zip_base64: toBase64(zip) },
      });
      saveEvents(created.namespace, fname, [{ name: "hello", body: JSON.stringify(template.event, null, 2) }]);
      ctx.navigate(`#/functions/${encodeURIComponent(fname)}/code`);
    } catch (err) {
      msg.error(err);
      button.disabled = false;
    }
  });
  root.append(h("div", { class: "page-head" }, h("h1", { text: "Create function" })), form);
  name.focus();
  return null;
}
