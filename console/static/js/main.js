// The console's shell: sign-in gate, top bar, and a hash router over the pages. Routes:
//   #/functions              the list (the default)
//   #/new                    create from a template
//   #/functions/NAME/TAB     code, test, logs, metrics, versions, config
//   #/usage                  requests and GB-s per function and day
//   #/keys                   API keys (admin)
import { session, onUnauthorized } from "./api.js";
import { h, clear } from "./dom.js";
import { renderSignIn } from "./pages/signin.js";
import { renderFunctions } from "./pages/functions.js";
import { renderCreate } from "./pages/create.js";
import { renderFunction } from "./pages/function.js";
import { renderKeys } from "./pages/keys.js";
import { renderUsage } from "./pages/usage.js";

const app = document.getElementById("app");
let cleanup = null;
let signedOutReason = "";

function parse(hash) {
  const [path0, q = ""] = hash.replace(/^#/, "").split("?");
  const path = path0 || "/functions";
  const query = new URLSearchParams(q);
  let m;
  if (path === "/" || path === "/functions") return { page: "functions" };
  if (path === "/new") return { page: "create" };
  if (path === "/keys") return { page: "keys" };
  if (path === "/usage") return { page: "usage" };
  if ((m = path.match(/^\/functions\/([^/]+)(?:\/([a-z]+))?$/))) {
    return { page: "function", name: decodeURIComponent(m[1]), tab: m[2] || "code", query };
  }
  return { page: "notfound", path };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function signOut(reason = "") {
  session.signOut();
  signedOutReason = reason;
  if (cleanup) cleanup();
  cleanup = null;
  route();
}

onUnauthorized((err) => signOut(`Signed out: the API key was refused (${err.message}).`));

function topBar(current) {
  const link = (href, text, active) =>
    h("a", { href, class: active ? "active" : "", "aria-current": active ? "page" : false, text });
  const key = session.key() || "";
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/functions" }, h("span", { class: "logo", "aria-hidden": "true" }), h("span", { class: "brand-name", text: "Nimbus" })),
    h(
      "nav",
      { class: "mainnav", "aria-label": "Main" },
      link("#/functions", "Functions", current.page === "functions" || current.page === "function"),
      link("#/new", "Create function", current.page === "create"),
      link("#/usage", "Usage", current.page === "usage"),
      link("#/keys", "Keys", current.page === "keys"),
    ),
    h("span", { class: "spacer" }),
    h("span", { class: "who", title: "the API key of this tab's session" }, `key …${key.slice(-4)}`),
    h("button", { type: "button", class: "ghost", id: "sign-out", onclick: () => signOut("You signed out.") }, "Sign out"),
  );
}

function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.warn("cleanup failed", err);
    }
  }
  cleanup = null;
  clear(app);
  if (!session.key()) {
    document.title = "Sign in · Nimbus console";
    cleanup = renderSignIn(app, {
      reason: signedOutReason,
      done: () => {
        signedOutReason = "";
        route();
      },
    });
    return;
  }
  const current = parse(location.hash);
  const view = h("main", { id: "view", class: "view" });
  app.append(topBar(current), view);
  const ctx = { navigate };
  if (current.page === "functions") cleanup = renderFunctions(view, ctx);
  else if (current.page === "create") cleanup = renderCreate(view, ctx);
  else if (current.page === "keys") cleanup = renderKeys(view, ctx);
  else if (current.page === "usage") cleanup = renderUsage(view, ctx);
  else if (current.page === "function") cleanup = renderFunction(view, { ...ctx, query: current.query }, current.name, current.tab);
  else {
    document.title = "Not found · Nimbus console";
    view.append(
      h("h1", { text: "Page not found" }),
      h("p", {}, "There is no console page at ", h("code", { text: current.path }), ". ", h("a", { href: "#/functions", text: "Back to functions" })),
    );
  }
}

window.addEventListener("hashchange", route);
route();
