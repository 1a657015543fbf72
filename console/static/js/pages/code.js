// The code of a function: every file of its package in a multi-file editor (CodeMirror 6), save
// and deploy with Ctrl-S. Binary and large files are listed, not opened, and kept as they are.
import { api } from "../api.js";
import { h, clear, messageBox } from "../dom.js";
import { rewriteZip, fromBase64, toBase64 } from "../zip.js";

// Unsaved edits survive a switch to another tab of the same function (in memory only).
const drafts = new Map();

let editorModule = null;
async function loadEditor() {
  if (!editorModule) editorModule = import("../../vendor/editor.js");
  return editorModule;
}

function sizeText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function renderCode(root, ctx) {
  const { name } = ctx;
  const msg = messageBox();
  const status = h("span", { class: "status muted", id: "save-status", "aria-live": "polite" });
  const saveButton = h("button", { type: "button", class: "primary", id: "save", title: "Save and deploy (Ctrl-S)", disabled: true }, "Save & deploy");
  const newButton = h("button", { type: "button", class: "ghost small", id: "new-file" }, "+ New file");
  const fileList = h("ul", { class: "files", id: "files", "aria-label": "Files" });
  const pane = h("div", { class: "editor-pane", id: "editor-pane" });
  const note = h("p", { class: "help", hidden: true });
  root.append(
    h("div", { class: "toolbar" }, saveButton, status, h("span", { class: "spacer" }), h("span", { class: "muted small", text: "Ctrl-S saves and deploys" })),
    msg.el,
    h("div", { class: "code-layout" }, h("aside", { class: "file-side" }, h("div", { class: "file-head" }, h("span", { text: "Files" }), newButton), fileList), h("div", { class: "editor-col" }, pane, note)),
  );

  let alive = true;
  let state = null; // {sha, revision, files: [{path,size,content,omitted}], texts: Map, added: Set, removed: Set}
  let editor = null;
  let fallback = null; // textarea per file when the editor bundle cannot load
  let saving = false;

  const textOf = (path) => {
    if (editor) {
      const t = editor.text(path);
      if (t !== null) return t;
    }
    if (fallback && fallback.has(path)) return fallback.get(path).value;
    return state.texts.get(path);
  };
  const original = (path) => {
    const f = state.files.find((x) => x.path === path);
    return f && !f.omitted ? f.content : null;
  };
  const changedPaths = () => {
    const out = [];
    for (const path of state.texts.keys()) {
      if (state.removed.has(path)) continue;
      if (state.added.has(path) || textOf(path) !== original(path)) out.push(path);
    }
    return out;
  };
  const updateStatus = () => {
    if (!state || saving) return;
    const changed = changedPaths();
    const dirty = changed.length + state.removed.size;
    saveButton.disabled = dirty === 0;
    status.textContent = dirty
      ? `Unsaved changes in ${dirty} file${dirty === 1 ? "" : "s"}`
      : `Deployed · revision ${state.revision}`;
    for (const li of fileList.children) {
      li.classList.toggle("dirty", changed.includes(li.dataset.path));
    }
  };

  const open = (path) => {
    const f = state.files.find((x) => x.path === path) || { path, size: 0, omitted: "" };
    for (const li of fileList.children) {
      const on = li.dataset.path === path;
      li.classList.toggle("active", on);
      li.firstChild.setAttribute("aria-current", on ? "true" : "false");
    }
    state.current = path;
    if (f.omitted) {
      if (editor) editor.view.dom.hidden = true;
      clear(note);
      note.hidden = false;
      pane.classList.add("omitted");
      note.append(
        h("strong", { text: path }),
        ` · ${sizeText(f.size)} · `,
        f.omitted === "binary" ? "a binary file: not opened here." : "too large to open here.",
        " It is kept as it is when you save.",
      );
      if (fallback) for (const ta of fallback.values()) ta.hidden = true;
      return;
    }
    pane.classList.remove("omitted");
    note.hidden = !fallback;
    if (editor) {
      editor.view.dom.hidden = false;
      editor.open(path, state.texts.get(path));
      editor.focus();
    } else if (fallback) {
      for (const [p, ta] of fallback) ta.hidden = p !== path;
      if (!fallback.has(path)) {
        const ta = h("textarea", { class: "plain-editor", spellcheck: "false", "aria-label": `code of ${path}`, value: state.texts.get(path) });
        ta.addEventListener("input", updateStatus);
        ta.addEventListener("keydown", (ev) => {
          if ((ev.ctrlKey || ev.metaKey) && ev.key === "s") {
            ev.preventDefault();
            save();
          }
        });
        fallback.set(path, ta);
        pane.append(ta);
      }
      fallback.get(path).focus();
    }
  };

  const renderFiles = () => {
    clear(fileList);
    const paths = state.files.map((f) => f.path).filter((p) => !state.removed.has(p));
    for (const p of state.added) if (!paths.includes(p)) paths.push(p);
    paths.sort();
    for (const path of paths) {
      const f = state.files.find((x) => x.path === path);
      const del = h("button", { type: "button", class: "icon", title: `Delete ${path}`, "aria-label": `Delete ${path}` }, "×");
      del.addEventListener("click", () => remove(path));
      const li = h(
        "li",
        { "data-path": path, class: f && f.omitted ? "omitted" : "" },
        h("button", { type: "button", class: "file" }, h("span", { class: "path", text: path }), f && f.omitted ? h("span", { class: "muted small", text: ` ${sizeText(f.size)}` }) : null),
        del,
      );
      li.firstChild.addEventListener("click", () => open(path));
      fileList.append(li);
    }
    updateStatus();
  };

  const remove = (path) => {
    if (!window.confirm(`Delete ${path} from the package? It is gone from the function once you save.`)) return;
    if (state.added.has(path)) state.added.delete(path);
    else state.removed.add(path);
    state.texts.delete(path);
    if (editor) editor.forget(path);
    renderFiles();
    const first = fileList.querySelector("li");
    if (first) open(first.dataset.path);
  };

  newButton.addEventListener("click", () => {
    const path = (window.prompt("New file's path in the package (e.g. util.py or lib/helpers.js):") || "").trim();
    if (!path) return;
    if (path.startsWith("/") || path.split("/").includes("..")) {
      msg.error(new Error(`path: “${path}” must be relative, without “..”`));
      return;
    }
    if (state.texts.has(path) || state.files.some((f) => f.path === path && !state.removed.has(path))) {
      msg.error(new Error(`path: “${path}” is already in the package`));
      return;
    }
    state.removed.delete(path);
    state.added.add(path);
    state.texts.set(path, "");
    renderFiles();
    open(path);
  });

  async function save() {
    if (!state || saving) return;
    const changed = changedPaths();
    if (!changed.length && !state.removed.size) {
      status.textContent = `Nothing to save · revision ${state.revision}`;
      return;
    }
    saving = true;
    saveButton.disabled = true;
    msg.clear();
    status.textContent = "Packaging…";
    try {
      const stored = await api.getCode(name, "zip");
      if (stored.code_sha256 !== state.sha) {
        throw Object.assign(new Error("the function's code changed since you opened it: copy your edits, then reload the page"), { status: 409 });
      }
      const texts = {};
      for (const path of changed) texts[path] = textOf(path);
      const zip = await rewriteZip(fromBase64(stored.zip_base64 || ""), texts, state.removed);
      status.textContent = `Deploying ${sizeText(zip.length)}…`;
      const updated = await api.putCode(name, toBase64(zip), state.revision);
      for (const [path, text] of Object.entries(texts)) {
        const f = state.files.find((x) => x.path === path);
        if (f) Object.assign(f, { content: text, size: new TextEncoder().encode(text).length });
        else state.files.push({ path, size: new TextEncoder().encode(text).length, content: text, omitted: "" });
        state.texts.set(path, text);
      }
      state.files = state.files.filter((f) => !state.removed.has(f.path));
      state.added.clear();
      state.removed.clear();
      state.sha = updated.code_sha256;
      state.revision = updated.revision;
      drafts.delete(name);
      if (ctx.refresh) ctx.refresh(updated);
      saving = false;
      renderFiles();
      status.textContent = `Deployed · revision ${updated.revision} · ${new Date().toLocaleTimeString()}`;
      const warnings = updated.warnings || [];
      if (warnings.length) msg.notice(`Deployed with warnings: ${warnings.join("; ")}`);
    } catch (err) {
      saving = false;
      msg.error(err);
      updateStatus();
    }
  }
  saveButton.addEventListener("click", save);

  status.textContent = "Loading the package…";
  Promise.all([api.getCode(name), loadEditor().catch((err) => ({ failed: err }))])
    .then(([code, mod]) => {
      if (!alive) return;
      const draft = drafts.get(name);
      const texts = new Map();
      for (const f of code.files || []) if (!f.omitted) texts.set(f.path, f.content);
      state = {
        sha: code.code_sha256,
        revision: Number(code.revision),
        files: (code.files || []).map((f) => ({ ...f, size: Number(f.size) })),
        texts,
        added: new Set(),
        removed: new Set(),
        current: null,
      };
      if (draft && draft.sha === state.sha) {
        for (const [p, t] of draft.texts) state.texts.set(p, t);
        state.added = new Set(draft.added);
        state.removed = new Set(draft.removed);
      }
      if (mod && !mod.failed && mod.create) {
        editor = mod.create(pane, { onSave: save, onChange: updateStatus });
      } else {
        fallback = new Map();
        note.textContent = "The code editor could not be loaded: plain text areas instead.";
      }
      renderFiles();
      const entry = (code.handler || "").split(".")[0];
      const first =
        [...fileList.querySelectorAll("li")].map((li) => li.dataset.path).find((p) => p.replace(/\.[^.]+$/, "") === entry && !state.files.find((f) => f.path === p && f.omitted)) ||
        (draft && draft.current) ||
        (fileList.querySelector("li:not(.omitted)") || fileList.querySelector("li") || {}).dataset?.path;
      if (first) open(first);
      updateStatus();
    })
    .catch((err) => {
      if (!alive) return;
      status.textContent = "";
      msg.error(err);
    });

  return () => {
    alive = false;
    if (state) {
      const texts = new Map();
      for (const path of state.texts.keys()) texts.set(path, textOf(path));
      drafts.set(name, { sha: state.sha, texts, added: [...state.added], removed: [...state.removed], current: state.current });
    }
    if (editor) editor.view.destroy();
  };
}
