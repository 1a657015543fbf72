// Sign in with an API key: checked against the API before it is kept (sessionStorage only).
import { api, session } from "../api.js";
import { h, messageBox } from "../dom.js";

export function renderSignIn(root, { reason, done }) {
  const msg = messageBox();
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const button = h("button", { type: "submit", class: "primary", id: "sign-in" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("div", { class: "signin-brand" }, h("span", { class: "logo big", "aria-hidden": "true" }), h("span", { text: "Nimbus" })),
    h("h1", { id: "signin-title", text: "Sign in to the console" }),
    h("label", { for: "api-key", text: "API key" }),
    input,
    h(
      "p",
      { id: "api-key-help", class: "help" },
      "The key is kept in this tab only (sessionStorage) and sent to this gateway alone. ",
      "The admin key of a local cluster is in ",
      h("code", { text: ".nimbus/credentials.json" }),
      ".",
    ),
    msg.el,
    button,
  );
  if (reason) msg.notice(reason);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) {
      msg.error(new Error("enter an API key"));
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      await api.listFunctions(key);
      session.signIn(key);
      input.value = "";
      done();
    } catch (err) {
      msg.error(err.status === 401 ? Object.assign(new Error(`the API key was refused: ${err.message}`), { status: 401 }) : err);
      button.disabled = false;
      button.textContent = "Sign in";
      input.select();
      input.focus();
    }
  });
  root.append(h("div", { class: "signin-page" }, form));
  input.focus();
  return null;
}
