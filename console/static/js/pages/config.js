// A function's configuration: handler, memory, timeout, environment, concurrency, keep-alive and
// minimum instances, saved with PATCH and the revision it was read at (a change made elsewhere
// meanwhile is a 409, shown in place).
import { call, fnPath } from "../api.js";
import { h, messageBox } from "../dom.js";

const NUMBERS = [
  ["memory_mb", "Memory (MB)", "128 to 10240"],
  ["timeout_s", "Timeout (s)", "1 to 900"],
  ["max_concurrency", "Max concurrency", "calls in flight at once; 0: no limit"],
  ["instance_concurrency", "Calls per instance", "1 unless the runtime handles more"],
  ["min_instances", "Min instances", "kept warm before any call"],
  ["keep_alive_s", "Keep-alive (s)", "how long the last idle instance stays"],
];

function envText(env) {
  return Object.entries(env || {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
}

function parseEnv(text) {
  const env = {};
  text.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith("#")) return;
    const eq = t.indexOf("=");
    if (eq <= 0) throw new Error(`environment, line ${i + 1}: “${t}” is not NAME=value`);
    env[t.slice(0, eq).trim()] = t.slice(eq + 1);
  });
  return env;
}

export function renderConfig(root, ctx) {
  const { name } = ctx;
  let fn = ctx.fn;
  const msg = messageBox();
  const fields = {};
  const handler = h("input", { id: "cfg-handler", autocomplete: "off", spellcheck: "false" });
  const description = h("input", { id: "cfg-description", autocomplete: "off" });
  const env = h("textarea", { id: "cfg-env", class: "code-input", rows: 6, spellcheck: "false", placeholder: "NAME=value, one a line" });
  const save = h("button", { type: "submit", class: "primary", id: "cfg-save" }, "Save configuration");
  const rows = NUMBERS.map(([key, label, help]) => {
    fields[key] = h("input", { id: `cfg-${key}`, type: "number", min: "0", step: "1", "aria-describedby": `cfg-${key}-help` });
    return h("div", { class: "cfg-field" }, h("label", { for: `cfg-${key}`, text: label }), fields[key], h("span", { id: `cfg-${key}-help`, class: "help", text: help }));
  });
  const fill = (f) => {
    handler.value = f.handler;
    description.value = f.description || "";
    env.value = envText(f.env);
    for (const [key] of NUMBERS) fields[key].value = String(f[key] ?? 0);
  };
  fill(fn);
  const form = h(
    "form",
    { class: "card cfg-form", id: "cfg-form" },
    h("div", { class: "cfg-field wide" }, h("label", { for: "cfg-handler", text: "Handler" }), handler),
    h("div", { class: "cfg-field wide" }, h("label", { for: "cfg-description", text: "Description" }), description),
    h("div", { class: "cfg-grid" }, rows),
    h("div", { class: "cfg-field wide" }, h("label", { for: "cfg-env", text: "Environment" }), env),
    msg.el,
    h("div", { class: "actions" }, save),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.clear();
    const body = { expected_revision: fn.revision, replace_env: true };
    try {
      body.env = parseEnv(env.value);
    } catch (err) {
      msg.error(err);
      env.focus();
      return;
    }
    if (handler.value.trim() !== fn.handler) body.handler = handler.value.trim();
    if (description.value !== (fn.description || "")) body.description = description.value;
    for (const [key, label] of NUMBERS) {
      const raw = fields[key].value.trim();
      if (!/^\d+$/.test(raw)) {
        msg.error(new Error(`${label}: “${raw}” is not a whole number`));
        fields[key].focus();
        return;
      }
      if (Number(raw) !== Number(fn[key] ?? 0)) body[key] = Number(raw);
    }
    save.disabled = true;
    msg.notice("Saving…");
    try {
      fn = await call("PATCH", fnPath(name), { body });
      fill(fn);
      if (ctx.refresh) ctx.refresh(fn);
      const warnings = fn.warnings || [];
      msg.notice(`Saved · revision ${fn.revision}${warnings.length ? ` · warnings: ${warnings.join("; ")}` : ""}`);
    } catch (err) {
      msg.error(err);
    } finally {
      save.disabled = false;
    }
  });
  root.append(form);
  return null;
}
