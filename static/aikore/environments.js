// Instance environments in the dashboard: the install step and progress shown while an instance is
// `installing`, the update / rebuild actions, and a delete dialog that lists exactly what goes
// (GET /api/instances/{id}/deletion).

import { api, ask, el, toast, reportError } from "./util.js";

export const TORCH_VARIANTS = ["auto", "cpu", "cu130", "cu129", "cu128", "cu126", "cu124", "cu121", "cu118"];

// The step line under the status badge: "installing torch (cpu)" and a bar when progress is known.
export function installProgress(inst) {
  if (inst.status !== "installing" && !(inst.status === "failed" && inst.install_step)) return null;
  const step = inst.install_step || "preparing";
  const wrap = el("div.install", { title: step });
  wrap.append(el("span.install-step", {}, inst.status === "failed" ? `failed at: ${step}` : step));
  if (inst.status === "installing") {
    const bar = el("progress.install-bar", { max: 1, "aria-label": `Install progress of ${inst.name}` });
    if (inst.install_progress !== null && inst.install_progress !== undefined) bar.value = inst.install_progress;
    wrap.append(bar); // no value: an indeterminate bar
  }
  return wrap;
}

async function envJob(inst, action, store) {
  const what = action === "update"
    ? { title: `Update “${inst.name}”?`, text: "Fetches its code (its git ref, else the blueprint's) and installs what changed. Your local edits to its files are kept; if the new code would overwrite them, the update stops and changes nothing.", ok: "Update" }
    : { title: `Rebuild the environment of “${inst.name}”?`, text: "Deletes its Python environment and builds it again (packages come from the shared cache). Its code and your files are not touched.", ok: "Rebuild" };
  if (["running", "starting", "installing"].includes(inst.status)) what.text += " It is running: it is stopped now and started again after the install.";
  if (!(await ask(what))) return;
  try {
    const result = await api("POST", `/instances/${inst.id}/${action}`);
    if (result && result.instance) store.upsert(result.instance);
    toast(result.message || `${what.ok} queued.`);
  } catch (err) { reportError(err, `${what.ok} ${inst.name} failed`); }
}

export const envActions = {
  update: (inst, store) => envJob(inst, "update", store),
  rebuild: (inst, store) => envJob(inst, "rebuild", store),
  async remove(inst, store) {
    let plan;
    try {
      plan = await api("GET", `/instances/${inst.id}/deletion`);
    } catch (err) { reportError(err, "Delete unavailable"); return; }
    if (plan.blocked_by_satellites.length) {
      toast(`${inst.name} has satellites that run its code (${plan.blocked_by_satellites.join(", ")}): delete them first.`, "error");
      return;
    }
    const lines = [
      "Removed:", ...plan.removed.map((r) => `• ${r.what}: ${r.path}`),
      "", "Kept:", ...plan.kept.map((k) => `• ${k.what}: ${k.path}`),
    ];
    if (plan.user_data) lines.push("", "It holds your files, so by default its folder goes to the trash instead (everything but the environment).");
    const answer = await ask({
      title: `Delete “${inst.name}”?`,
      text: lines.join("\n"),
      check: `Move its folder to trash (${plan.trash_dir}) instead of deleting it`,
      checked: plan.trash_default,
      ok: "Delete",
      danger: true,
    });
    if (!answer) return;
    try {
      await api("DELETE", `/instances/${inst.id}?keep_files=${answer.checked ? "true" : "false"}`);
      store.remove(inst.id);
      toast(answer.checked ? `Deleted ${inst.name}; its folder is in the trash.` : `Deleted ${inst.name}.`, "ok");
    } catch (err) { reportError(err, "Delete failed"); }
  },
};

// The environment fields of the create/edit form.
export function fillEnvFields(form, instance, instances) {
  const f = form.elements;
  f.python_version.value = instance ? instance.python_version || "" : "";
  f.torch_variant.value = instance ? instance.torch_variant || "auto" : "auto";
  f.git_ref.value = instance ? instance.git_ref || "" : "";
  const parent = f.parent;
  const choices = instances.filter((i) => !i.parent && (!instance || i.id !== instance.id));
  parent.replaceChildren(el("option", { value: "" }, "— none: its own code and environment —"),
    ...choices.map((i) => el("option", { value: String(i.id) }, i.name)));
  parent.value = instance && instance.parent ? String(instance.parent) : "";
  parent.disabled = Boolean(instance); // a satellite stays one; an instance can't become one
  syncSatellite(form);
}

// A satellite runs its parent's install: its blueprint and environment fields are the parent's.
export function syncSatellite(form) {
  const f = form.elements;
  const satellite = f.parent.value !== "";
  for (const name of ["python_version", "torch_variant", "git_ref"]) f[name].disabled = satellite;
  if (!f.parent.disabled) f.blueprint.disabled = satellite;
}

export function envValues(form) {
  const f = form.elements;
  if (f.parent.value) return { parent: Number(f.parent.value) };
  return {
    python_version: f.python_version.value.trim(),
    torch_variant: f.torch_variant.value.trim() || "auto",
    git_ref: f.git_ref.value.trim(),
  };
}
