#!/usr/bin/env bash
# Bundle the dashboard's third-party front-end libraries (installed by `npm ci` from package.json /
# package-lock.json) into static/dist/, which Django's collectstatic then serves from our own
# origin. Nothing is fetched from a CDN at page load. static/dist/ is a build output (not committed).
#   static/dist/codemirror.js  CodeMirror 6 + the shell mode of @codemirror/legacy-modes (ES module)
#   static/dist/uplot.js       uPlot (ES module)        static/dist/uplot.css  its stylesheet
#   static/dist/xterm.js       xterm.js + its fit addon  static/dist/xterm.css  its stylesheet
#   static/dist/swagger-ui-bundle.js, swagger-ui.css    Swagger UI (swagger-ui-dist) for /api/docs
#   static/dist/desktop-viewer.js  noVNC (@novnc/novnc) + static/aikore/desktop-viewer.js: the desktop
#                              viewer of persistent instances, served on app origins as /_aikore/desktop.js
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
esbuild=node_modules/.bin/esbuild
if [ ! -x "$esbuild" ]; then
    echo "build-frontend: $esbuild missing; run 'npm ci' first (make frontend does)" >&2
    exit 1
fi

out=static/dist
tmp="$(mktemp -d static/.dist-build.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

# Only what static/aikore/editor.js imports, so the bundle stays small.
"$esbuild" --bundle --format=esm --minify --legal-comments=none --log-level=warning \
    --sourcefile=codemirror-entry.js --outfile="$tmp/codemirror.js" <<'JS'
export { EditorView, keymap } from "@codemirror/view";
export { EditorState, Compartment } from "@codemirror/state";
export { basicSetup } from "codemirror";
export { indentWithTab } from "@codemirror/commands";
export { StreamLanguage } from "@codemirror/language";
export { shell } from "@codemirror/legacy-modes/mode/shell";
export { oneDark } from "@codemirror/theme-one-dark";
JS

"$esbuild" --bundle --format=esm --minify --legal-comments=none --log-level=warning \
    --sourcefile=uplot-entry.js --outfile="$tmp/uplot.js" <<'JS'
export { default } from "uplot";
JS
cp node_modules/uplot/dist/uPlot.min.css "$tmp/uplot.css"
# Swagger UI ships ready-built: its bundle and stylesheet, without the source maps.
cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css "$tmp/"
sed -i '/sourceMappingURL=/d' "$tmp/swagger-ui-bundle.js" "$tmp/swagger-ui.css"

# The instance terminal (static/aikore/terminal.js): xterm.js and its fit addon.
"$esbuild" --bundle --format=esm --minify --legal-comments=none --log-level=warning \
    --sourcefile=xterm-entry.js --outfile="$tmp/xterm.js" <<'JS'
export { Terminal } from "@xterm/xterm";
export { FitAddon } from "@xterm/addon-fit";
JS
cp node_modules/@xterm/xterm/css/xterm.css "$tmp/xterm.css"

# The desktop viewer (persistent mode): one self-contained module with noVNC inside, since it runs on
# app origins, where only /_aikore/desktop.js is AiKore's.
"$esbuild" static/aikore/desktop-viewer.js --bundle --format=esm --minify --legal-comments=none \
    --log-level=warning --outfile="$tmp/desktop-viewer.js"

rm -rf "$out"
mv "$tmp" "$out"
chmod 755 "$out"
trap - EXIT
echo "build-frontend: $(du -sh "$out" | cut -f1) in $out/ ($(ls "$out" | tr '\n' ' '))"
