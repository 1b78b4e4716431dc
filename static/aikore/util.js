// Small helpers shared by the dashboard modules: API calls, websockets, DOM, formatting, toasts,
// and a prompt/confirm dialog.

// The CSRF cookie is HttpOnly (an app on another port of this host could read it otherwise):
// the dashboard template puts the token in a meta tag.
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Whether the signed-in user's role (the page's data-role) allows `level`: the dashboard only offers
// what the server would accept (accounts/roles.py decides).
const RANKS = { viewer: 1, operator: 2, admin: 3 };
export function can(level) {
  return (RANKS[document.body.dataset.role] || 0) >= RANKS[level];
}

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail;
    super(typeof detail === "string" ? detail : `Request failed (${status}).`);
    this.status = status;
    this.body = body || {};
    this.fields = fieldErrors(body);
  }
}

// {field: "message"} from either {"errors": {field: [msg]}} or {"detail": [{loc: [..., field], msg}]}.
function fieldErrors(body) {
  const out = {};
  if (!body) return out;
  if (body.errors && typeof body.errors === "object") {
    for (const [field, msgs] of Object.entries(body.errors)) out[field] = [].concat(msgs).join(" ");
  } else if (Array.isArray(body.detail)) {
    for (const err of body.detail) {
      const loc = (err.loc || []).filter((p) => !["body", "payload", "query", "path"].includes(p));
      const field = loc.length ? String(loc[loc.length - 1]) : "request";
      out[field] = [out[field], err.msg].filter(Boolean).join(" ");
    }
  }
  return out;
}

export async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch("/api" + path, options);
  if (response.status === 401) {
    location.assign("/login/?next=" + encodeURIComponent(location.pathname));
    throw new ApiError(401, { detail: "Signed out." });
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text.slice(0, 200) }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Set once the page is being left (the logout form, a link): a stream the server ends meanwhile is
// no reason to navigate elsewhere.
let leaving = false;
addEventListener("beforeunload", () => { leaving = true; });

// A websocket that reconnects with backoff. onMessage(obj); url() is called at each (re)connect so
// the caller can resume (e.g. a log offset). Returns {send(obj), close()}.
export function liveSocket(url, { onMessage, onState = () => {} }) {
  let ws = null;
  let closed = false;
  let delay = 500;
  let timer = null;
  const open = () => {
    if (closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + url());
    ws.onopen = () => { delay = 500; onState("up"); };
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      onMessage(msg);
    };
    ws.onclose = (event) => {
      if (closed) return;
      // 4401: the server ended this stream because the session ended (logout elsewhere, account
      // deactivated): go to the sign-in page instead of reconnecting.
      if (event.code === 4401) {
        if (!leaving) location.assign("/login/?next=" + encodeURIComponent(location.pathname));
        return;
      }
      onState("down");
      timer = setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  return {
    send(obj) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
    },
    close() {
      closed = true;
      clearTimeout(timer);
      if (ws) ws.close();
    },
  };
}

// el("button.primary", {type: "button", onclick}, "text", child...)
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || isNaN(bytes)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function toast(message, kind = "info", ms = 5000) {
  const node = el(`div.toast.${kind}`, {}, message);
  $("#toasts").append(node);
  setTimeout(() => node.remove(), kind === "error" ? ms * 2 : ms);
}

export function reportError(err, prefix = "") {
  console.error(err);
  toast((prefix ? prefix + ": " : "") + (err && err.message ? err.message : String(err)), "error");
}

// A modal question. Resolves to {value, checked} or null when cancelled.
export function ask({ title, text = "", label = "", value = "", check = "", checked = false, ok = "OK", danger = false }) {
  const dialog = $("#ask-dialog");
  $("#ask-title").textContent = title;
  $("#ask-text").textContent = text;
  $("#ask-input-wrap").hidden = !label;
  $("#ask-label").textContent = label;
  $("#ask-input").value = value;
  $("#ask-check-wrap").hidden = !check;
  $("#ask-check-label").textContent = check;
  $("#ask-check").checked = Boolean(checked);
  const okButton = $("#ask-ok");
  okButton.textContent = ok;
  okButton.classList.toggle("danger", danger);
  return new Promise((resolve) => {
    const finish = (result) => {
      dialog.removeEventListener("close", onClose);
      $("#ask-form").removeEventListener("submit", onSubmit);
      $("#ask-cancel").removeEventListener("click", onCancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      finish({ value: $("#ask-input").value.trim(), checked: $("#ask-check").checked });
    };
    const onCancel = () => finish(null);
    const onClose = () => finish(null);
    dialog.addEventListener("close", onClose);
    $("#ask-form").addEventListener("submit", onSubmit);
    $("#ask-cancel").addEventListener("click", onCancel);
    dialog.showModal();
    (label ? $("#ask-input") : okButton).focus();
    if (label) $("#ask-input").select();
  });
}
