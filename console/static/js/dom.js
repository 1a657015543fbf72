// Building the page: elements from tag, attributes and children. Text is always a text node
// (never parsed as HTML): function output, logs and names from the API are shown as they are.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// A message area that shows one error (or notice) in place, announced to screen readers.
export function messageBox() {
  const el = h("div", { class: "message", role: "alert", hidden: true });
  return {
    el,
    error(err) {
      clear(el);
      el.className = "message error";
      el.hidden = false;
      el.append(h("strong", { text: errorTitle(err) }), " ", errorText(err));
    },
    notice(text) {
      clear(el);
      el.className = "message notice";
      el.hidden = false;
      el.textContent = text;
    },
    clear() {
      clear(el);
      el.hidden = true;
    },
  };
}

function errorTitle(err) {
  if (err && err.status) return `Error ${err.status}:`;
  return "Error:";
}

function errorText(err) {
  if (err && err.message) return err.message;
  return String(err);
}

export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso || "—";
  const s = Math.round((now - t) / 1000);
  if (s < 45) return "just now";
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  for (const [name, secs] of units) {
    const n = Math.floor(s / secs);
    if (n >= 1) return `${n} ${name}${n === 1 ? "" : "s"} ago`;
  }
  return "just now";
}

export function formatTime(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return iso || "";
  return t.toLocaleString();
}
