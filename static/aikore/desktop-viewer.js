// The desktop viewer of an instance in persistent mode: AiKore's page on the app's origin at
// /instance/<slug>/desktop/ (templates/proxy/desktop.html), bundled with noVNC into
// static/dist/desktop-viewer.js (scripts/build-frontend.sh) and served by nginx as /_aikore/desktop.js.
// The VNC stream goes to <desktop>/websockify on this same origin; nginx adds the instance's
// websockify token there, so this page never sees a token or a password.
//
// - the remote desktop follows the size of this page (noVNC's resizeSession + Xvnc's RandR);
// - the clipboard works both ways through a panel (text copied on the desktop shows up there; text
//   typed or pasted there goes to the desktop with "Send to desktop");
// - "View only" stops sending keys and clicks (remembered for this tab);
// - a dropped connection comes back by itself (the desktop and its browser never stopped).

import RFB from "@novnc/novnc";

const config = JSON.parse(document.getElementById("aikore-desktop").textContent);
const $ = (id) => document.getElementById(id);
const screen = $("screen");
const statusLine = $("desktop-status");
const viewOnly = $("view-only");
const panel = $("clipboard-panel");
const clipText = $("clipboard-text");
const clipToggle = $("clipboard-toggle");
const VIEW_ONLY_KEY = `aikore-desktop-view-only:${config.websocket}`;
const RETRY_MS = [500, 1000, 2000, 4000, 8000];

const state = { connected: false, connects: 0, rfb: null, lastClipboard: "", retries: 0, timer: null };
window.aikoreDesktop = state; // for the browser tests and debugging

function say(text) {
  statusLine.textContent = text;
}

function socketUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${config.websocket}`;
}

function connect() {
  clearTimeout(state.timer);
  if (state.rfb) {
    const old = state.rfb;
    state.rfb = null;
    try { old.disconnect(); } catch { /* already closed */ }
  }
  say(`Connecting to the desktop of ${config.name}…`);
  const rfb = new RFB(screen, socketUrl(), { shared: true });
  state.rfb = rfb;
  rfb.resizeSession = true;
  rfb.scaleViewport = false;
  rfb.clipViewport = false;
  rfb.focusOnClick = true;
  rfb.background = "#000";
  rfb.viewOnly = viewOnly.checked;
  rfb.addEventListener("connect", () => {
    if (state.rfb !== rfb) return;
    state.connected = true;
    state.connects += 1;
    state.retries = 0;
    say(`${config.name}: desktop${viewOnly.checked ? " (view only)" : ""}`);
  });
  rfb.addEventListener("disconnect", (event) => {
    if (state.rfb !== rfb) return;
    state.connected = false;
    state.rfb = null;
    const delay = RETRY_MS[Math.min(state.retries, RETRY_MS.length - 1)];
    state.retries += 1;
    say(`${event.detail.clean ? "Disconnected" : "Connection lost"}; trying again in ${delay / 1000} s…`);
    state.timer = setTimeout(connect, delay);
  });
  rfb.addEventListener("clipboard", (event) => {
    state.lastClipboard = event.detail.text;
    clipText.value = event.detail.text;
  });
  rfb.addEventListener("desktopname", (event) => {
    if (state.connected) say(`${event.detail.name}${viewOnly.checked ? " (view only)" : ""}`);
  });
}

function setViewOnly(on) {
  viewOnly.checked = on;
  if (state.rfb) state.rfb.viewOnly = on;
  try { sessionStorage.setItem(VIEW_ONLY_KEY, on ? "1" : ""); } catch { /* storage off */ }
  if (state.connected) say(`${config.name}: desktop${on ? " (view only)" : ""}`);
}

viewOnly.addEventListener("change", () => setViewOnly(viewOnly.checked));
clipToggle.addEventListener("click", () => {
  panel.hidden = !panel.hidden;
  clipToggle.setAttribute("aria-pressed", String(!panel.hidden));
  if (!panel.hidden) clipText.focus();
});
$("clipboard-send").addEventListener("click", () => {
  if (!state.rfb || viewOnly.checked) return;
  state.rfb.clipboardPasteFrom(clipText.value);
  state.rfb.focus();
});
$("clipboard-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(clipText.value);
  } catch {
    clipText.select();
    document.execCommand("copy");
  }
});
$("reconnect").addEventListener("click", () => { state.retries = 0; connect(); });

let remembered = "";
try { remembered = sessionStorage.getItem(VIEW_ONLY_KEY) || ""; } catch { /* storage off */ }
setViewOnly(Boolean(remembered) || new URLSearchParams(location.search).get("view_only") === "1");
connect();
