// The View tab's choice between an instance's app and its desktop (persistent mode). The desktop
// is noVNC on the app's own origin (/instance/<slug>/desktop/, served by nginx behind the same
// app-access check as the app; see templates/proxy/desktop.html): the dashboard only frames it.
// Persistent instances open on their desktop (that is where their app keeps running in its kiosk
// browser); a desktop program has nothing but its desktop. The choice is remembered per instance
// for this browser tab.

import { appOrigin, appUrl } from "./origins.js";

const KEY = "aikore-view-mode";

function remembered() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "{}"); } catch { return {}; }
}

// The URL of an instance's desktop viewer, from its API summary ("" without a desktop).
export function desktopUrl(inst) {
  if (!inst || !inst.desktop || !inst.desktop_path) return "";
  const origin = appOrigin(inst.app_origin || "apps");
  return origin ? origin + inst.desktop_path : inst.desktop_path;
}

export class ViewMode {
  // group: the toolbar's "App | Desktop" button group; onChange: called after a switch.
  constructor({ group, app, desktop, onChange }) {
    this.group = group;
    this.buttons = { app, desktop };
    this.onChange = onChange;
    this.choices = remembered();
    app.addEventListener("click", () => this.choose("app"));
    desktop.addEventListener("click", () => this.choose("desktop"));
  }

  // "app" or "desktop": what the View tab shows for this instance.
  mode(inst) {
    if (!inst || !inst.desktop) return "app";
    if (inst.desktop === "program") return "desktop";
    return this.choices[inst.id] || "desktop";
  }

  url(inst) {
    return this.mode(inst) === "desktop" ? desktopUrl(inst) : appUrl(inst);
  }

  // Show the switch for instances with a desktop (a desktop program has no app to switch to).
  sync(inst) {
    this.current = inst;
    const mode = this.mode(inst);
    this.group.hidden = !(inst && inst.desktop);
    this.buttons.app.hidden = Boolean(inst && inst.desktop === "program");
    for (const [name, button] of Object.entries(this.buttons)) button.setAttribute("aria-pressed", String(mode === name));
  }

  choose(mode) {
    const inst = this.current;
    if (!inst || !inst.desktop) return;
    this.choices[inst.id] = mode;
    try { sessionStorage.setItem(KEY, JSON.stringify(this.choices)); } catch { /* storage off */ }
    this.sync(inst);
    this.onChange();
  }
}
