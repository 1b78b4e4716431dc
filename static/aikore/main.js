// Dashboard entry point: wires the instance store to the table, the detail pane (logs, script,
// embedded view) and the monitor; resizable panes, theme toggle and keyboard shortcuts.

import { api, can, liveSocket, $, reportError } from "./util.js";
import { Notifications } from "./notifications.js";
import { store, actions, badge, InstanceTable, InstanceForm } from "./instances.js";
import { LogConsole } from "./logs.js";
import { ScriptEditor } from "./editor.js";
import { Monitor } from "./monitor.js";
import { startHealthBanner } from "./health.js";
import { TerminalPane } from "./terminal.js";
import { ViewMode } from "./desktop.js";

const table = new InstanceTable($("#instances-body"), $("#instances-empty"));
const form = new InstanceForm($("#instance-dialog"));
const logs = new LogConsole({
  view: $("#log-view"), status: $("#log-status"), matches: $("#log-matches"), follow: $("#log-follow"),
  pause: $("#log-pause"), search: $("#log-search"), clear: $("#log-clear"), download: $("#log-download"),
});
const editor = new ScriptEditor($("#script-editor"), $("#script-status"));
const monitor = new Monitor();
const notifications = new Notifications({ button: $("#notify-button"), store });
// Only for users who may open one (the template leaves the tab out otherwise).
const terminal = $("#tab-terminal")
  ? new TerminalPane({ root: $("#terminal-view"), status: $("#terminal-status"), newShell: $("#terminal-new") })
  : null;
const viewMode = new ViewMode({ group: $("#view-mode"), app: $("#view-mode-app"), desktop: $("#view-mode-desktop"),
  onChange: () => updateView(store.selected()) });
window.aikore = { store, logs, editor, monitor, notifications, terminal, viewMode }; // for debugging and the browser tests
startHealthBanner($("#health-banner"));

// --- detail pane --------------------------------------------------------------------------------

const TABS = ["logs", "script", "view", ...(terminal ? ["terminal"] : [])];
let currentTab = sessionStorage.getItem("aikore-tab") || "logs";

function showTab(name, focus = false) {
  currentTab = TABS.includes(name) ? name : "logs";
  sessionStorage.setItem("aikore-tab", currentTab);
  for (const tab of TABS) {
    const button = $(`#tab-${tab}`);
    const on = tab === currentTab;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    $(`#panel-${tab}`).hidden = !on;
    if (on && focus) button.focus();
  }
  refreshDetail();
}

function refreshDetail() {
  const inst = store.selected();
  $("#detail-title").textContent = inst ? inst.name : "Select an instance";
  $("#detail-badge").replaceChildren(...(inst ? [badge(inst.status)] : []));
  $("#detail-edit").disabled = !inst;
  $("#detail-update").disabled = $("#detail-rebuild").disabled = !inst || Boolean(inst.parent);
  for (const id of ["#log-clear", "#log-download", "#script-save", "#script-save-restart", "#script-save-blueprint", "#view-reload"]) {
    $(id).disabled = !inst;
  }
  logs.attach(inst);
  if (currentTab === "script") editor.load(inst);
  updateView(inst);
  if (terminal) terminal.attach(inst, currentTab === "terminal");
}

let framedUrl = null;
function updateView(inst) {
  const open = $("#view-open");
  const frame = $("#view-frame");
  const running = Boolean(inst && inst.status === "running");
  viewMode.sync(inst);
  const url = inst ? viewMode.url(inst) : "#";
  open.href = url;
  open.setAttribute("aria-disabled", String(!running));
  $("#view-note").textContent = !inst ? "" : running ? url : `${inst.name} is ${inst.status}; start it to see its UI.`;
  const want = currentTab === "view" && running ? url : null;
  if (want !== framedUrl) {
    framedUrl = want;
    if (want) frame.src = want; else frame.removeAttribute("src");
    frame.hidden = !want;
  }
}

for (const tab of TABS) $(`#tab-${tab}`).addEventListener("click", () => showTab(tab));
$(".tabs").addEventListener("keydown", (event) => {
  const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (!step) return;
  const index = (TABS.indexOf(currentTab) + step + TABS.length) % TABS.length;
  showTab(TABS[index], true);
});
$("#view-reload").addEventListener("click", () => {
  const frame = $("#view-frame");
  if (frame.src) frame.src = frame.src;
});
$("#detail-edit").addEventListener("click", () => store.selected() && form.open(store.selected()));
$("#detail-update").addEventListener("click", () => store.selected() && actions.update(store.selected()));
$("#detail-rebuild").addEventListener("click", () => store.selected() && actions.rebuild(store.selected()));
$("#new-instance").addEventListener("click", () => form.open());

let lastSelected = null;
store.on(() => {
  table.render();
  const inst = store.selected();
  if (inst && inst.id !== lastSelected) sessionStorage.setItem("aikore-selected", String(inst.id));
  lastSelected = inst ? inst.id : null;
  refreshDetail();
});

// --- live instance list -----------------------------------------------------------------------

function setConnection(state) {
  const conn = $("#conn");
  conn.className = `conn ${state}`;
  conn.textContent = state === "up" ? "live" : state === "down" ? "reconnecting…" : "connecting…";
}

async function loadInstances() {
  try {
    store.replaceAll(await api("GET", "/instances"));
    const remembered = Number(sessionStorage.getItem("aikore-selected"));
    if (store.selectedId === null && store.get(remembered)) store.select(remembered);
  } catch (err) {
    reportError(err, "Instances unavailable");
  }
}

loadInstances();
let statusFailures = 0;
let statusPoll = null;
const statusSocket = liveSocket(() => "/ws/instances/", {
  onMessage: (msg) => {
    if (msg.type === "snapshot") store.replaceAll(msg.instances || []);
    else if (msg.type === "instance") store.upsert(msg.instance);
    else if (msg.type === "deleted") store.remove(msg.id);
  },
  onState: (state) => {
    setConnection(state);
    if (state === "up") { statusFailures = 0; clearInterval(statusPoll); statusPoll = null; }
    // While the websocket is down, keep the table fresh over the API.
    if (state === "down" && ++statusFailures >= 2 && !statusPoll) statusPoll = setInterval(loadInstances, 3000);
  },
});
window.aikore.statusSocket = statusSocket;
monitor.start();
notifications.start();

// --- theme ------------------------------------------------------------------------------------

function toggleTheme() {
  const root = document.documentElement;
  const dark = getComputedStyle(root).colorScheme === "dark";
  root.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("aikore-theme", root.dataset.theme); } catch { /* private mode */ }
  editor.applyTheme();
  monitor.rebuild();
}
$("#theme-toggle").addEventListener("click", toggleTheme);
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { editor.applyTheme(); monitor.rebuild(); });

// --- resizable panes --------------------------------------------------------------------------

function setupSplitter(splitter, { variable, axis, min, max }) {
  const layout = $("#layout");
  const saved = localStorage.getItem(`aikore-${variable}`);
  if (saved) layout.style.setProperty(variable, saved);
  const apply = (percent) => {
    const value = `${Math.min(max, Math.max(min, percent)).toFixed(1)}%`;
    layout.style.setProperty(variable, value);
    splitter.setAttribute("aria-valuenow", String(parseFloat(value)));
    try { localStorage.setItem(`aikore-${variable}`, value); } catch { /* ignore */ }
    monitor.schedule();
  };
  const current = () => parseFloat(getComputedStyle(layout).getPropertyValue(variable)) || 50;
  splitter.setAttribute("aria-valuemin", String(min));
  splitter.setAttribute("aria-valuemax", String(max));
  splitter.setAttribute("aria-valuenow", String(current()));
  splitter.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    splitter.setPointerCapture(event.pointerId);
    splitter.classList.add("dragging");
    const rect = layout.getBoundingClientRect();
    const move = (e) => apply(axis === "x" ? (100 * (e.clientX - rect.left)) / rect.width : (100 * (e.clientY - rect.top)) / rect.height);
    const up = () => {
      splitter.classList.remove("dragging");
      splitter.removeEventListener("pointermove", move);
      splitter.removeEventListener("pointerup", up);
    };
    splitter.addEventListener("pointermove", move);
    splitter.addEventListener("pointerup", up);
  });
  splitter.addEventListener("keydown", (event) => {
    const keys = axis === "x" ? { ArrowLeft: -2, ArrowRight: 2 } : { ArrowUp: -2, ArrowDown: 2 };
    const step = keys[event.key] ?? { Home: -100, End: 100 }[event.key];
    if (step === undefined) return;
    event.preventDefault();
    apply(current() + step);
  });
}
setupSplitter($("#split-v"), { variable: "--left-w", axis: "x", min: 25, max: 75 });
setupSplitter($("#split-h"), { variable: "--top-h", axis: "y", min: 15, max: 85 });

// --- keyboard shortcuts -----------------------------------------------------------------------

function moveSelection(step) {
  const list = store.list();
  if (!list.length) return;
  const index = list.findIndex((i) => i.id === store.selectedId);
  const next = list[Math.min(list.length - 1, Math.max(0, index < 0 ? 0 : index + step))];
  store.select(next.id);
  table.focusSelected();
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
  const target = event.target;
  if (target.closest("input, select, textarea, [contenteditable], .cm-editor") || document.querySelector("dialog[open]")) return;
  if (target.closest(".splitter, [role=tablist]") && event.key.startsWith("Arrow")) return;
  const inst = store.selected();
  const handlers = {
    n: () => can("admin") && form.open(),
    e: () => can("admin") && inst && form.open(inst),
    s: () => can("operator") && inst && actions.start(inst),
    x: () => can("operator") && inst && actions.stop(inst),
    r: () => can("operator") && inst && actions.restart(inst),
    j: () => moveSelection(1),
    k: () => moveSelection(-1),
    ArrowDown: () => (target.closest("#instances-pane") ? moveSelection(1) : false),
    ArrowUp: () => (target.closest("#instances-pane") ? moveSelection(-1) : false),
    1: () => showTab("logs"),
    2: () => showTab("script"),
    3: () => showTab("view"),
    4: () => (terminal ? showTab("terminal") : false),
    "/": () => { showTab("logs"); $("#log-search").focus(); },
    f: () => logs.setFollow(!logs.following),
    t: toggleTheme,
    "?": () => $("#help-dialog").showModal(),
  };
  const handler = handlers[event.key];
  if (handler && handler() !== false) event.preventDefault();
});
$("#help-button").addEventListener("click", () => $("#help-dialog").showModal());

window.addEventListener("beforeunload", (event) => {
  if (editor.hasUnsaved()) event.preventDefault();
});

showTab(currentTab);
