// Instances: a small store fed by the API and /ws/instances/, the table with per-row actions, and
// the create/edit form (errors from the API are shown next to their fields).

import { api, ApiError, ask, can, el, $, toast, reportError } from "./util.js";
import { appUrl } from "./origins.js";
import { installProgress, envActions, fillEnvFields, syncSatellite, envValues } from "./environments.js";
import { Catalogue } from "./catalogue.js";

const ACTIVE = ["starting", "running", "installing"];

// 16x16 line icons for the row actions (constant markup, never built from data).
const ICONS = {
  start: '<path d="M5 3.5v9l7-4.5z" fill="currentColor"/>',
  stop: '<rect x="4" y="4" width="8" height="8" rx="1" fill="currentColor"/>',
  restart: '<path d="M12.5 8a4.5 4.5 0 1 1-1.3-3.2M12.5 2.5v2.8H9.7" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round"/>',
  open: '<path d="M9 3h4v4M13 3 7.5 8.5M11 9.5V13H3V5h3.5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round"/>',
  clone: '<rect x="5.5" y="5.5" width="7.5" height="7.5" rx="1" fill="none" stroke="currentColor" stroke-width="1.4"/><path d="M3 10.5V3h7.5" fill="none" stroke="currentColor" stroke-width="1.4"/>',
  delete: '<path d="M3 4.5h10M6.5 4.5V3h3v1.5M4.5 4.5l.7 8.5h5.6l.7-8.5" fill="none" stroke="currentColor" stroke-width="1.4" stroke-linejoin="round"/>',
};

function icon(name) {
  const wrap = document.createElement("span");
  wrap.innerHTML = `<svg width="16" height="16" viewBox="0 0 16 16" aria-hidden="true">${ICONS[name]}</svg>`;
  return wrap.firstChild;
}

// --- store ------------------------------------------------------------------------------------

export const store = {
  items: new Map(),
  selectedId: null,
  listeners: new Set(),
  on(fn) { this.listeners.add(fn); },
  emit() { for (const fn of this.listeners) fn(this); },
  list() { return [...this.items.values()].sort((a, b) => a.name.localeCompare(b.name)); },
  get(id) { return this.items.get(Number(id)) || null; },
  selected() { return this.get(this.selectedId); },
  replaceAll(list) {
    const fresh = new Map();
    for (const item of list) fresh.set(item.id, { ...this.items.get(item.id), ...item });
    this.items = fresh;
    if (!this.items.has(this.selectedId)) this.selectedId = null;
    this.emit();
  },
  upsert(item) {
    if (!item || item.id === undefined) return;
    const known = this.items.get(item.id);
    this.items.set(item.id, { ...known, ...item });
    if (!known && item.base_blueprint === undefined) {
      // Status events carry a subset of fields: fetch the rest once.
      api("GET", `/instances/${item.id}`).then((full) => this.upsert(full), () => {});
    }
    this.emit();
  },
  remove(id) {
    this.items.delete(Number(id));
    if (this.selectedId === Number(id)) this.selectedId = null;
    this.emit();
  },
  select(id) {
    const next = id === null ? null : Number(id);
    if (next === this.selectedId) return;
    this.selectedId = next;
    this.emit();
  },
};

export const isActive = (inst) => ACTIVE.includes(inst.status);

export function badge(status) {
  return el("span.badge", { dataset: { status }, title: status }, status || "unknown");
}

// --- actions (shared by the table, the detail pane and keyboard shortcuts) -----------------

export const actions = {
  async start(inst) { return job(inst, "start", "Starting"); },
  async stop(inst) { return job(inst, "stop", "Stopping"); },
  async restart(inst) { return job(inst, "restart", "Restarting"); },
  async clone(inst) {
    const answer = await ask({ title: `Clone “${inst.name}”`, label: "New name", value: `${inst.name} copy`, ok: "Clone" });
    if (!answer || !answer.value) return;
    try {
      const copy = await api("POST", `/instances/${inst.id}/clone`, { name: answer.value });
      store.upsert(copy);
      store.select(copy.id);
      toast(`Cloned as ${copy.name}.`, "ok");
    } catch (err) { reportError(err, "Clone failed"); }
  },
  async remove(inst) { return envActions.remove(inst, store); },
  async update(inst) { return envActions.update(inst, store); },
  async rebuild(inst) { return envActions.rebuild(inst, store); },
  async setAutostart(inst, on) {
    try {
      const result = await api("PATCH", `/instances/${inst.id}`, { autostart: on });
      store.upsert(result.instance);
    } catch (err) {
      reportError(err, "Autostart not changed");
      store.emit();
    }
  },
};

async function job(inst, action, verb) {
  try {
    const result = await api("POST", `/instances/${inst.id}/${action}`);
    if (result && result.instance) store.upsert(result.instance);
    toast(`${verb} ${inst.name}…`);
  } catch (err) { reportError(err, `${verb} ${inst.name} failed`); }
}

// --- table ------------------------------------------------------------------------------------

export class InstanceTable {
  constructor(tbody, empty) {
    this.tbody = tbody;
    this.empty = empty;
    this.rows = new Map();
    tbody.addEventListener("click", (event) => this.onClick(event));
    tbody.addEventListener("change", (event) => {
      const toggle = event.target.closest("input[data-action=autostart]");
      if (toggle) actions.setAutostart(store.get(toggle.closest("tr").dataset.id), toggle.checked);
    });
  }

  onClick(event) {
    const row = event.target.closest("tr[data-id]");
    if (!row) return;
    const inst = store.get(row.dataset.id);
    const button = event.target.closest("button[data-action]");
    if (button && inst) {
      const action = { start: "start", stop: "stop", restart: "restart", clone: "clone", delete: "remove" }[button.dataset.action];
      actions[action](inst);
      return;
    }
    if (!event.target.closest("a, input")) store.select(inst.id);
  }

  render() {
    const list = store.list();
    this.empty.hidden = list.length > 0;
    const seen = new Set();
    list.forEach((inst, index) => {
      seen.add(inst.id);
      let row = this.rows.get(inst.id);
      if (!row) { row = this.createRow(inst); this.rows.set(inst.id, row); }
      this.updateRow(row, inst);
      if (this.tbody.children[index] !== row) this.tbody.insertBefore(row, this.tbody.children[index] || null);
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) { row.remove(); this.rows.delete(id); }
    }
  }

  createRow(inst) {
    const button = (action, label, cls = "") =>
      el(`button${cls}`, { type: "button", dataset: { action }, title: label, "aria-label": `${label} ${inst.name}` }, icon(action));
    const row = el("tr", { dataset: { id: inst.id }, tabindex: "-1" },
      el("td.name", {}, el("strong"), el("span.bp")),
      el("td.status"),
      el("td.gpu"),
      el("td.port"),
      el("td.auto", {}, el("input.switch", { type: "checkbox", dataset: { action: "autostart" } })),
      el("td.actions", {},
        button("start", "Start", ".needs-operator"),
        button("stop", "Stop", ".needs-operator"),
        button("restart", "Restart", ".needs-operator"),
        el("a.button", { dataset: { action: "open" }, target: "_blank", rel: "noopener", title: "Open in a new tab" }, icon("open")),
        button("clone", "Clone", ".needs-admin"),
        button("delete", "Delete", ".danger.needs-admin"),
      ),
    );
    return row;
  }

  updateRow(row, inst) {
    row.setAttribute("aria-selected", String(inst.id === store.selectedId));
    row.tabIndex = inst.id === store.selectedId ? 0 : -1;
    row.dataset.status = inst.status;
    row.querySelector("td.name strong").textContent = inst.name;
    row.querySelector("td.name .bp").textContent = inst.base_blueprint || "";
    const status = row.querySelector("td.status");
    const current = status.firstElementChild;
    const progress = installProgress(inst);
    if (!current || current.dataset.status !== inst.status || progress || status.children.length > 1) {
      status.replaceChildren(badge(inst.status), ...(progress ? [progress] : []));
    }
    status.title = inst.error_message || "";
    const gpus = inst.gpu_ids ? inst.gpu_ids.split(",") : [];
    row.querySelector("td.gpu").replaceChildren(...(gpus.length ? gpus.map((g) => el("span.chip", {}, `GPU${g}`)) : [el("span.muted", {}, "all")]));
    const port = row.querySelector("td.port");
    port.replaceChildren(inst.port ? String(inst.port) : el("span.muted", {}, "auto"));
    if (inst.public_port) port.append(" ", el("a", { href: appUrl({ ...inst, app_origin: `port:${inst.public_port}`, app_path: "/" }), target: "_blank", rel: "noopener", title: "Public port" }, `:${inst.public_port}`));
    const auto = row.querySelector("input[data-action=autostart]");
    auto.checked = Boolean(inst.autostart);
    auto.disabled = !can("admin");
    auto.setAttribute("aria-label", `Autostart ${inst.name}`);
    for (const button of row.querySelectorAll("td.actions [data-action]")) {
      button.setAttribute("aria-label", `${button.title.split(" ")[0]} ${inst.name}`);
    }
    const active = isActive(inst);
    row.querySelector("[data-action=start]").disabled = active || inst.status === "stopping";
    row.querySelector("[data-action=stop]").disabled = inst.status === "stopped";
    row.querySelector("[data-action=restart]").disabled = inst.status === "stopping";
    const open = row.querySelector("[data-action=open]");
    open.href = appUrl(inst);
    open.setAttribute("aria-disabled", String(inst.status !== "running"));
    open.tabIndex = inst.status === "running" ? 0 : -1;
  }

  focusSelected() {
    const row = this.rows.get(store.selectedId);
    if (row) row.focus();
  }
}

// --- create / edit form -----------------------------------------------------------------------

const FIELDS = ["name", "blueprint", "gpu_ids", "port", "launch_args", "output_path", "allowed_origins", "persistent_mode",
  "autostart", "python_version", "torch_variant", "git_ref", "parent"];

export class InstanceForm {
  constructor(dialog) {
    this.dialog = dialog;
    this.form = $("#instance-form", dialog);
    this.catalogue = new Catalogue($("#bp-catalogue", dialog), $("#f-blueprint", dialog), { onPick: (bp) => this.picked(bp) });
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    $("#form-cancel", dialog).addEventListener("click", () => dialog.close());
    $("#f-parent", dialog).addEventListener("change", () => { syncSatellite(this.form); this.syncCatalogue(); });
    for (const radio of this.form.elements.port_mode) {
      radio.addEventListener("change", () => this.syncPortMode());
    }
    // Editing a field clears its error.
    this.form.addEventListener("input", (event) => {
      const field = event.target.closest("[data-field]");
      if (field) this.setError(field.dataset.field, "");
    });
  }

  async open(instance = null) {
    this.instance = instance;
    this.form.reset();
    this.clearErrors();
    $("#instance-dialog-title").textContent = instance ? `Edit “${instance.name}”` : "New instance";
    $("#form-submit").textContent = instance ? "Save" : "Create";
    const [blueprints, gpus] = await Promise.all([
      api("GET", "/blueprints").catch((err) => { reportError(err, "Blueprints unavailable"); return []; }),
      api("GET", "/system/gpus").catch(() => ({ available: false, reason: "GPU information unavailable.", gpus: [] })),
    ]);
    this.catalogue.fill(blueprints, instance ? instance.base_blueprint : "", Boolean(instance));
    this.autoName = "";
    this.fillGpus(gpus, instance);
    fillEnvFields(this.form, instance, store.list());
    const f = this.form.elements;
    f.name.value = instance ? instance.name : "";
    f.launch_args.value = instance ? instance.launch_args || "" : "";
    f.output_path.value = instance ? instance.output_path || "" : "";
    f.allowed_origins.value = instance ? instance.allowed_origins || "" : "";
    f.persistent_mode.checked = Boolean(instance && instance.persistent_mode);
    f.autostart.checked = Boolean(instance && instance.autostart);
    f.port_mode.value = instance && instance.port ? "manual" : "auto";
    f.port.value = instance && instance.port ? instance.port : "";
    this.syncPortMode();
    if (!this.dialog.open) this.dialog.showModal();
    f.name.focus();
  }

  // An app picked in the catalogue names a new instance while the name is empty (or still ours).
  picked(bp) {
    const f = this.form.elements;
    f.python_version.placeholder = bp.python_version ? `the app's: ${bp.python_version}` : "any Python 3";
    f.git_ref.placeholder = bp.git_ref ? `the app's: ${bp.git_ref}` : "the app's default branch";
    const name = f.name;
    if (this.instance || (name.value.trim() && name.value !== this.autoName)) return;
    const taken = new Set(store.list().map((i) => i.name.toLowerCase()));
    let candidate = bp.name || bp.id;
    for (let n = 2; taken.has(candidate.toLowerCase()); n++) candidate = `${bp.name || bp.id} ${n}`;
    name.value = this.autoName = candidate;
    this.setError("name", "");
  }

  // A satellite runs its parent's app: the catalogue shows that one, locked.
  syncCatalogue() {
    if (this.instance) return;
    const parent = store.get(this.form.elements.parent.value);
    if (parent) this.catalogue.select(parent.base_blueprint, false);
    this.catalogue.setLocked(Boolean(parent));
  }

  fillGpus(info, instance) {
    const box = $("#f-gpus");
    const chosen = new Set(instance && instance.gpu_ids ? instance.gpu_ids.split(",") : []);
    const gpus = info.gpus || [];
    const boxes = gpus.map((gpu) => el("label", {},
      el("input", { type: "checkbox", name: "gpu", value: String(gpu.index), checked: chosen.has(String(gpu.index)) }),
      `GPU ${gpu.index}: ${gpu.name}`));
    for (const id of chosen) {
      if (!gpus.some((g) => String(g.index) === id)) {
        boxes.push(el("label", {}, el("input", { type: "checkbox", name: "gpu", value: id, checked: true }), `GPU ${id} (not detected)`));
      }
    }
    if (!boxes.length) {
      boxes.push(el("span.muted", {}, `No GPU detected${info.reason ? ` (${info.reason})` : ""}; the instance runs without CUDA_VISIBLE_DEVICES.`));
    }
    box.replaceChildren(...boxes);
  }

  syncPortMode() {
    const manual = this.form.elements.port_mode.value === "manual";
    const port = this.form.elements.port;
    port.disabled = !manual;
    if (manual) port.focus();
  }

  values() {
    const f = this.form.elements;
    const gpus = [...this.form.querySelectorAll("input[name=gpu]:checked")].map((c) => c.value);
    const manual = f.port_mode.value === "manual";
    const rawPort = f.port.value.trim();
    return {
      name: f.name.value.trim(),
      blueprint: f.blueprint.value,
      gpu_ids: gpus.join(","),
      port: manual && rawPort !== "" ? Number(rawPort) : null,
      launch_args: f.launch_args.value,
      output_path: f.output_path.value.trim(),
      allowed_origins: f.allowed_origins.value.trim().split(/[\s,]+/).filter(Boolean).join(" "),
      persistent_mode: f.persistent_mode.checked,
      autostart: f.autostart.checked,
      ...envValues(this.form),
    };
  }

  async submit() {
    this.clearErrors();
    const values = this.values();
    const f = this.form.elements;
    if (!this.instance && !values.blueprint && !values.parent) {
      this.setError("blueprint", "Pick an app in the catalogue.");
      $("#bp-search").focus();
      return;
    }
    if (f.port_mode.value === "manual" && f.port.value.trim() === "") {
      this.setError("port", "Enter a port number or choose Automatic.");
      return;
    }
    const submit = $("#form-submit");
    submit.disabled = true;
    try {
      if (this.instance) {
        const changes = {};
        for (const key of FIELDS) {
          if (key === "blueprint" || key === "parent" || !(key in values)) continue;
          const before = key === "port" ? this.instance.port ?? null : this.instance[key] ?? (typeof values[key] === "boolean" ? false : "");
          if (values[key] !== before) changes[key] = values[key];
        }
        if (!Object.keys(changes).length) { this.dialog.close(); return; }
        const result = await api("PATCH", `/instances/${this.instance.id}`, changes);
        store.upsert(result.instance);
        toast(result.message || "Saved.", "ok");
      } else {
        if (values.python_version === "") delete values.python_version; // empty: the blueprint's Python
        const created = await api("POST", "/instances", values);
        store.upsert(created);
        store.select(created.id);
        toast(`Created ${created.name}.`, "ok");
      }
      this.dialog.close();
    } catch (err) {
      this.showApiError(err);
    } finally {
      submit.disabled = false;
    }
  }

  showApiError(err) {
    if (!(err instanceof ApiError)) { reportError(err); return; }
    let placed = 0;
    const unplaced = [];
    for (const [field, message] of Object.entries(err.fields)) {
      if (this.setError(field, message)) placed++;
      else unplaced.push(message);
    }
    if (!placed || unplaced.length) {
      const box = $("#form-error");
      box.textContent = unplaced.length ? unplaced.join(" ") : err.message;
      box.hidden = false;
    }
    const first = this.form.querySelector("[aria-invalid=true]");
    if (first) first.focus();
  }

  setError(field, message) {
    const target = document.getElementById(`err-${field}`);
    if (!target) return false;
    target.textContent = message;
    const wrap = target.closest("[data-field]");
    for (const input of wrap.querySelectorAll("input:not([type=radio]):not([type=checkbox]), select")) {
      if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }
    return true;
  }

  clearErrors() {
    for (const field of FIELDS) this.setError(field, "");
    $("#form-error").hidden = true;
    $("#form-error").textContent = "";
  }
}
