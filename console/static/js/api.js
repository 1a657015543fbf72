// The console's client of the public REST API, on this same origin (the gateway). The API key
// lives in sessionStorage only: never in a URL, a cookie, localStorage or a log.

const KEY = "nimbus.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const session = {
  key() {
    return sessionStorage.getItem(KEY);
  },
  signIn(key) {
    sessionStorage.setItem(KEY, key);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
  },
};

// Listeners for a 401 once signed in (the key was revoked): the shell signs out.
const unauthorized = [];
export function onUnauthorized(fn) {
  unauthorized.push(fn);
}

async function errorOf(res) {
  let body = null;
  const text = await res.text();
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const message =
    (body && (body.message || body.errorMessage)) || text || res.statusText || "request failed";
  return new ApiError(res.status, body && body.code, message, body && body.details);
}

// A call of the API: JSON in, JSON out; an error answer becomes an ApiError with the server's
// message. `key` overrides the session's (sign-in checks a key before keeping it).
export async function call(method, path, { body, key, raw = false } = {}) {
  const apiKey = key === undefined ? session.key() : key;
  const headers = {};
  if (apiKey) headers["Authorization"] = `Bearer ${apiKey}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, cache: "no-store", credentials: "omit" });
  } catch (err) {
    throw new ApiError(0, "UNAVAILABLE", `the gateway did not answer (${err.message})`);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && key === undefined) unauthorized.forEach((fn) => fn(err));
    throw err;
  }
  if (raw) return res;
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

export const fnPath = (name) => `/v1/functions/${encodeURIComponent(name)}`;

export const api = {
  listFunctions: (key) => call("GET", "/v1/functions", { key }),
  getFunction: (name) => call("GET", fnPath(name)),
  createFunction: (body) => call("POST", "/v1/functions", { body }),
  getCode: (name, format = "files") => call("GET", `${fnPath(name)}/code?format=${format}`),
  putCode: (name, zipBase64, expectedRevision) =>
    call("PUT", `${fnPath(name)}/code`, {
      body: { code: { zip_base64: zipBase64 }, expected_revision: expectedRevision },
    }),
  invoke: (name, eventText) =>
    call("POST", `${fnPath(name)}:invoke?log=tail`, { body: eventText, raw: true }),
  logs: (name, { requestId = "", since = "", limit = 200 } = {}) => {
    const q = new URLSearchParams();
    if (requestId) q.set("request_id", requestId);
    if (since) q.set("since", since);
    q.set("limit", String(limit));
    return call("GET", `${fnPath(name)}/logs?${q}`);
  },
};
