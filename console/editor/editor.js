// The console's code editor: CodeMirror 6 with the languages the runtimes use, bundled by esbuild
// into ../static/vendor/editor.js (scripts/build_console.sh) as an ES module.
import { EditorView, basicSetup } from "codemirror";
import { keymap } from "@codemirror/view";
import { EditorState, Compartment } from "@codemirror/state";
import { indentWithTab } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";

function languageFor(path) {
  const lower = path.toLowerCase();
  if (lower.endsWith(".py")) return python();
  if (/\.(m|c)?js$/.test(lower)) return javascript();
  if (/\.(m|c)?ts$/.test(lower)) return javascript({ typescript: true });
  if (lower.endsWith(".json")) return json();
  return [];
}

// One editor over many files: each file keeps its own state (text, undo history, selection).
export function create(parent, { onSave, onChange } = {}) {
  const language = new Compartment();
  const states = new Map();
  let current = null;
  const extensions = (path) => [
    basicSetup,
    keymap.of([
      { key: "Mod-s", preventDefault: true, run: () => { if (onSave) onSave(); return true; } },
      indentWithTab,
    ]),
    language.of(languageFor(path)),
    EditorView.updateListener.of((u) => {
      if (u.docChanged && onChange) onChange(current, u.state.doc.toString());
    }),
    EditorView.contentAttributes.of({ "aria-label": "code of " + path }),
  ];
  const view = new EditorView({ parent, state: EditorState.create({ doc: "" }) });
  return {
    open(path, text) {
      if (current !== null) states.set(current, view.state);
      current = path;
      const saved = states.get(path);
      view.setState(saved || EditorState.create({ doc: text, extensions: extensions(path) }));
    },
    forget(path) { states.delete(path); },
    reset() { states.clear(); current = null; view.setState(EditorState.create({ doc: "" })); },
    text(path) {
      if (path === current) return view.state.doc.toString();
      const s = states.get(path);
      return s ? s.doc.toString() : null;
    },
    current() { return current; },
    focus() { view.focus(); },
    view,
  };
}
