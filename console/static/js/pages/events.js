// Saved test events, per namespace and function, in this browser's localStorage (they are the
// user's own sample inputs; the API key is never stored here).

const PREFIX = "nimbus.events.";

function storageKey(namespace, fn) {
  return `${PREFIX}${namespace || "-"}/${fn}`;
}

export function loadEvents(namespace, fn) {
  try {
    const raw = localStorage.getItem(storageKey(namespace, fn));
    const list = raw ? JSON.parse(raw) : [];
    return Array.isArray(list) ? list.filter((e) => e && typeof e.name === "string" && typeof e.body === "string") : [];
  } catch {
    return [];
  }
}

export function saveEvents(namespace, fn, events) {
  localStorage.setItem(storageKey(namespace, fn), JSON.stringify(events));
}
