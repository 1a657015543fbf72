// Test a function: saved events, invoke, and the result with its request id, cold start,
// duration, billed time and the log tail, all shown as text.
import { api } from "../api.js";
import { h, clear, messageBox } from "../dom.js";
import { loadEvents, saveEvents } from "./events.js";

function decodeTail(b64) {
  if (!b64) return "";
  try {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TextDecoder().decode(bytes);
  } catch {
    return "";
  }
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function renderTest(root, ctx) {
  const { name, fn } = ctx;
  const msg = messageBox();
  let events = loadEvents(fn.namespace, name);
  if (!events.length) events = [{ name: "default", body: "{}" }];
  const select = h("select", { id: "event-select", "aria-label": "Saved events" });
  const eventName = h("input", { id: "event-name", autocomplete: "off", spellcheck: "false" });
  const body = h("textarea", { id: "event-body", class: "code-input", spellcheck: "false", rows: 12, "aria-label": "Event (JSON)" });
  const invokeButton = h("button", { type: "button", class: "primary", id: "invoke", title: "Invoke (Ctrl-Enter)" }, "Invoke");
  const saveButton = h("button", { type: "button", id: "save-event" }, "Save event");
  const deleteButton = h("button", { type: "button", class: "ghost", id: "delete-event" }, "Delete");
  const result = h("section", { class: "card result", id: "result", "aria-live": "polite", hidden: true });

  const fill = (selected) => {
    clear(select);
    for (const e of events) select.append(h("option", { value: e.name, text: e.name }));
    select.value = selected;
    const e = events.find((x) => x.name === selected) || events[0];
    select.value = e.name;
    eventName.value = e.name;
    body.value = e.body;
  };
  fill(events[0].name);
  select.addEventListener("change", () => fill(select.value));

  saveButton.addEventListener("click", () => {
    const n = eventName.value.trim();
    if (!n) {
      msg.error(new Error("event name: give the event a name"));
      eventName.focus();
      return;
    }
    try {
      JSON.parse(body.value);
    } catch (err) {
      msg.error(new Error(`the event is not JSON: ${err.message}`));
      return;
    }
    const i = events.findIndex((x) => x.name === n);
    if (i >= 0) events[i] = { name: n, body: body.value };
    else events.push({ name: n, body: body.value });
    saveEvents(fn.namespace, name, events);
    fill(n);
    msg.notice(`Saved the event “${n}”.`);
  });
  deleteButton.addEventListener("click", () => {
    events = events.filter((x) => x.name !== select.value);
    if (!events.length) events = [{ name: "default", body: "{}" }];
    saveEvents(fn.namespace, name, events);
    fill(events[0].name);
    msg.clear();
  });

  const row = (label, value, id) => [h("dt", { text: label }), h("dd", { id, text: value })];

  async function invoke() {
    msg.clear();
    let text = body.value.trim() || "{}";
    try {
      JSON.parse(text);
    } catch (err) {
      msg.error(new Error(`the event is not JSON: ${err.message}`));
      body.focus();
      return;
    }
    invokeButton.disabled = true;
    invokeButton.textContent = "Invoking…";
    const started = performance.now();
    try {
      const res = await api.invoke(name, text);
      const payload = await res.text();
      const elapsed = performance.now() - started;
      const hdr = (k) => res.headers.get(k) || "";
      const error = hdr("x-nimbus-function-error");
      const durationUs = Number(hdr("x-nimbus-duration-us") || 0);
      const initUs = Number(hdr("x-nimbus-init-duration-us") || 0);
      clear(result);
      result.hidden = false;
      result.className = `card result ${error ? "failed" : "ok"}`;
      result.append(
        h("h2", { id: "result-status", text: error ? `Function error: ${error}` : "Succeeded" }),
        h(
          "dl",
          { class: "facts-grid" },
          row("Request id", hdr("x-nimbus-request-id"), "result-request-id"),
          row("Version", hdr("x-nimbus-executed-version") || "$LATEST", "result-version"),
          row("Cold start", hdr("x-nimbus-cold-start") === "true" ? `yes${initUs ? ` · init ${(initUs / 1000).toFixed(1)} ms` : ""}` : "no", "result-cold-start"),
          row("Duration", `${(durationUs / 1000).toFixed(2)} ms`, "result-duration"),
          row("Billed", `${hdr("x-nimbus-billed-ms")} ms`, "result-billed"),
          row("Round trip", `${elapsed.toFixed(0)} ms`, "result-round-trip"),
        ),
        h("h3", { text: "Response" }),
        h("pre", { class: "output", id: "result-body", text: pretty(payload) }),
        h("h3", { text: "Log tail" }),
        h("pre", { class: "output log", id: "result-log", text: decodeTail(hdr("x-nimbus-log-tail")) || "(no output)" }),
        h("p", {}, h("a", { href: `#/functions/${encodeURIComponent(name)}/logs?request_id=${encodeURIComponent(hdr("x-nimbus-request-id"))}`, id: "result-logs-link", text: "All log lines of this request" })),
      );
    } catch (err) {
      msg.error(err);
    } finally {
      invokeButton.disabled = false;
      invokeButton.textContent = "Invoke";
    }
  }
  invokeButton.addEventListener("click", invoke);
  body.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      ev.preventDefault();
      invoke();
    }
  });

  root.append(
    h(
      "div",
      { class: "test-layout" },
      h(
        "section",
        { class: "card" },
        h("h2", { text: "Test event" }),
        h("div", { class: "row" }, h("label", { for: "event-select", text: "Saved events" }), select),
        h("div", { class: "row" }, h("label", { for: "event-name", text: "Name" }), eventName),
        h("label", { for: "event-body", text: "Event (JSON)" }),
        body,
        msg.el,
        h("div", { class: "actions" }, invokeButton, saveButton, deleteButton),
        h("p", { class: "help", text: "Saved events stay in this browser. Ctrl-Enter invokes." }),
      ),
      result,
    ),
  );
  return null;
}
