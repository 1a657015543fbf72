// Builds ../static/vendor/editor.js from editor.js (CodeMirror 6) with esbuild. Run by
// scripts/build_console.sh; the output is committed, so nothing here runs when Nimbus runs.
//
// One patch: style-mod (CodeMirror's CSS-in-JS) puts its rules in a <style> element unless the
// editor lives in a shadow root, and the console's Content-Security-Policy (style-src 'self')
// refuses inline <style>. A constructed stylesheet (document.adoptedStyleSheets) is not inline
// markup, so the patch makes style-mod use one for the document too.
import { build } from "esbuild";
import { readFile, writeFile, readdir } from "node:fs/promises";
import path from "node:path";

const styleModPatch = {
  name: "style-mod-constructed-sheets",
  setup(b) {
    b.onLoad({ filter: /style-mod[\\/]src[\\/]style-mod\.js$/ }, async (args) => {
      const src = await readFile(args.path, "utf8");
      const from = "if (!root.head && root.adoptedStyleSheets && win.CSSStyleSheet) {";
      if (!src.includes(from)) throw new Error("style-mod changed: update the patch in build.mjs");
      return { contents: src.replace(from, "if (root.adoptedStyleSheets && win.CSSStyleSheet) {"), loader: "js" };
    });
  },
};

await build({
  entryPoints: ["editor.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  banner: { js: "/* The Nimbus console's editor: CodeMirror 6 (MIT, see LICENSES.txt beside this file), built by console/editor/build.mjs */" },
  outfile: "../static/vendor/editor.js",
  plugins: [styleModPatch],
  logLevel: "info",
});

// The licenses of what the bundle holds (every package under node_modules that esbuild read is
// one of these: CodeMirror's, Lezer's, style-mod, w3c-keyname, crelt; all MIT).
const root = "node_modules";
const names = [];
for (const entry of await readdir(root)) {
  if (entry.startsWith(".") || entry === "esbuild") continue;
  if (entry.startsWith("@")) {
    if (entry === "@esbuild") continue;
    for (const sub of await readdir(path.join(root, entry))) names.push(`${entry}/${sub}`);
  } else names.push(entry);
}
let text = "Third-party code in editor.js, bundled from these npm packages:\n";
for (const name of names.sort()) {
  const dir = path.join(root, name);
  const pkg = JSON.parse(await readFile(path.join(dir, "package.json"), "utf8"));
  const files = (await readdir(dir)).filter((f) => /^licen[cs]e/i.test(f));
  text += `\n==== ${name} ${pkg.version} (${pkg.license}) ====\n`;
  text += files.length ? await readFile(path.join(dir, files[0]), "utf8") : `${pkg.license}\n`;
}
await writeFile("../static/vendor/LICENSES.txt", text);
