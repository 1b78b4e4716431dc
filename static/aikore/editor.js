// The launch.sh editor: CodeMirror 6 with shell highlighting, loaded on first use. Save, save and
// restart, save as a custom blueprint.

import { api, can, reportError, toast, $ } from "./util.js";
import { store } from "./instances.js";

let cm = null; // the CodeMirror bundle, imported on first use

export class ScriptEditor {
  constructor(root, status) {
    this.root = root;
    this.statusEl = status;
    this.view = null;
    this.instanceId = null;
    this.saved = "";
    this.drafts = new Map(); // instance id -> unsaved text
    $("#script-save").addEventListener("click", () => this.save(false));
    $("#script-save-restart").addEventListener("click", () => this.save(true));
    $("#script-save-blueprint").addEventListener("click", () => this.saveAsBlueprint());
    $("#blueprint-name").addEventListener("keydown", (e) => { if (e.key === "Enter") this.saveAsBlueprint(); });
  }

  async ensureEditor() {
    if (this.view) return;
    cm ||= await import("codemirror-bundle");
    this.theme = new cm.Compartment();
    const saveKeys = cm.keymap.of([
      { key: "Mod-s", preventDefault: true, run: () => { this.save(false); return true; } },
      cm.indentWithTab,
    ]);
    this.view = new cm.EditorView({
      parent: this.root,
      state: cm.EditorState.create({
        doc: "",
        extensions: [
          cm.basicSetup,
          saveKeys,
          // Only the admin role edits scripts; others read them.
          cm.EditorState.readOnly.of(!can("admin")),
          cm.StreamLanguage.define(cm.shell),
          this.theme.of(this.themeExtension()),
          cm.EditorView.updateListener.of((u) => { if (u.docChanged) this.showDirty(); }),
        ],
      }),
    });
    this.view.dom.setAttribute("data-testid", "script-editor");
  }

  themeExtension() {
    const dark = getComputedStyle(document.documentElement).colorScheme === "dark";
    return dark ? cm.oneDark : [];
  }

  applyTheme() {
    if (this.view) this.view.dispatch({ effects: this.theme.reconfigure(this.themeExtension()) });
  }

  // Show the selected instance's script. Unsaved edits are kept per instance while you look at
  // another one, and come back when you return.
  async load(instance, force = false) {
    if (!force && (instance ? instance.id : null) === this.instanceId) return;
    if (this.isDirty()) this.drafts.set(this.instanceId, this.text());
    else this.drafts.delete(this.instanceId);
    if (!instance) { this.instanceId = null; this.saved = ""; this.setText(""); this.setStatus(""); return; }
    try {
      await this.ensureEditor();
      this.instanceId = instance.id;
      this.setStatus("Loading…");
      const script = await api("GET", `/instances/${instance.id}/script`);
      if (this.instanceId !== instance.id) return;
      this.saved = script.content;
      const draft = this.drafts.get(instance.id);
      this.setText(draft ?? script.content);
      this.setStatus(draft ? "launch.sh · unsaved changes" : `launch.sh · ${script.size} bytes`);
    } catch (err) {
      this.setStatus(err.message);
      reportError(err, "Script not loaded");
    }
  }

  setText(text) {
    if (!this.view) return;
    this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } });
    this.showDirty();
  }

  text() { return this.view ? this.view.state.doc.toString() : ""; }
  isDirty() { return this.view !== null && this.instanceId !== null && this.text() !== this.saved; }
  hasUnsaved() { return this.isDirty() || [...this.drafts.keys()].some((id) => store.get(id)); }
  showDirty() { $("#script-save").textContent = this.isDirty() ? "Save •" : "Save"; }
  setStatus(text) { this.statusEl.textContent = text; }

  async save(restart) {
    const inst = store.get(this.instanceId);
    if (!inst) return;
    try {
      const result = await api("PUT", `/instances/${inst.id}/script` + (restart ? "?restart=true" : ""), { content: this.text() });
      this.saved = result.content;
      this.drafts.delete(inst.id);
      if (result.content !== this.text()) this.setText(result.content);
      this.showDirty();
      const msg = restart ? `Saved launch.sh; restarting ${inst.name}.` : "Saved launch.sh.";
      this.setStatus(`${msg} (${result.size} bytes)`);
      toast(msg, "ok");
    } catch (err) {
      this.setStatus(err.message);
      reportError(err, "Not saved");
    }
  }

  async saveAsBlueprint() {
    const inst = store.get(this.instanceId);
    const input = $("#blueprint-name");
    const name = input.value.trim();
    if (!inst) return;
    if (!name) { input.focus(); toast("Type a name for the new blueprint first.", "error"); return; }
    try {
      if (this.isDirty()) await this.save(false);
      const bp = await api("POST", "/blueprints", { instance_id: inst.id, name });
      input.value = "";
      const msg = `Saved as custom blueprint “${bp.id}”.`;
      this.setStatus(msg);
      toast(msg, "ok");
    } catch (err) {
      const fields = err.fields || {};
      const message = fields.name || err.message;
      this.setStatus(message);
      reportError(new Error(message), "Blueprint not saved");
    }
  }
}
