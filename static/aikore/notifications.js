// Notifications: the history of events (what happened while you were away), the targets they go to
// (staff only: Apprise URLs hold secrets and come back masked), which kinds each target and each
// instance sends, a test button and each target's delivery status. Live over /ws/notifications/.

import { api, ApiError, ask, can, el, $, liveSocket, toast, reportError } from "./util.js";

const MAX_EVENTS = 200;
const SEEN_KEY = "aikore-notify-seen";
const TABS = ["history", "targets", "instances"];

// el() with an "#id" anywhere in the spec: h("input#notify-url.wide", ...).
function h(spec, attrs = {}, ...children) {
  const id = (spec.match(/#([\w-]+)/) || [])[1];
  const node = el(spec.replace(/#[\w-]+/, ""), attrs, ...children);
  if (id) node.id = id;
  return node;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

function deliveryChip(d) {
  const label = { sent: "✓", failed: "✗", retrying: "↻", pending: "…" }[d.status] || d.status;
  const name = d.target_name || "a target"; // target names and errors are the admin role's (the API leaves them out)
  const title = `${name}: ${d.status}` + (d.attempts ? ` after ${d.attempts} attempt(s)` : "") + (d.error ? ` — ${d.error}` : "");
  return el("span.chip.delivery", { dataset: { status: d.status }, title }, d.target_name ? `${label} ${d.target_name}` : label);
}

export class Notifications {
  constructor({ button, store }) {
    this.button = button;
    this.instances = store;
    this.events = new Map();
    this.kinds = [];
    this.targets = [];
    this.staff = can("admin"); // targets hold secrets: the admin role only (the API says so too)
    this.tab = "history";
    this.seen = Number(localStorage.getItem(SEEN_KEY) || 0);
    this.dialog = this.build();
    document.body.append(this.dialog);
    button.addEventListener("click", () => this.open());
  }

  // --- data -------------------------------------------------------------------------------------

  async start() {
    try {
      this.kinds = await api("GET", "/notifications/kinds");
      for (const event of await api("GET", `/notifications/events?limit=${MAX_EVENTS}`)) this.events.set(event.id, event);
    } catch (err) {
      reportError(err, "Notifications unavailable");
    }
    this.updateUnread();
    this.socket = liveSocket(() => "/ws/notifications/", {
      onMessage: (msg) => { if (msg.type === "event") this.receive(msg.event); },
    });
  }

  receive(event) {
    const known = this.events.has(event.id);
    this.events.set(event.id, event);
    if (this.events.size > MAX_EVENTS) {
      const oldest = Math.min(...this.events.keys());
      this.events.delete(oldest);
    }
    if (!known && !event.suppressed_by && ["failure", "warning"].includes(event.level)) {
      toast(event.title, event.level === "failure" ? "error" : "info");
    }
    this.updateUnread();
    if (this.dialog.open && this.tab === "history") this.renderHistory();
    if (this.dialog.open && this.tab === "targets" && known) this.loadTargets();
  }

  sortedEvents() {
    return [...this.events.values()].sort((a, b) => b.id - a.id);
  }

  unread() {
    return [...this.events.values()].filter((e) => e.id > this.seen && !e.suppressed_by).length;
  }

  updateUnread() {
    const unread = this.unread();
    const count = $("#notify-unread", this.button) || this.button.appendChild(h("span.count#notify-unread"));
    count.id = "notify-unread";
    count.textContent = unread > 99 ? "99+" : String(unread);
    count.hidden = unread === 0;
    this.button.setAttribute("aria-label", unread ? `Notifications (${unread} new)` : "Notifications");
  }

  markSeen() {
    const newest = Math.max(0, ...this.events.keys());
    this.seen = Math.max(this.seen, newest);
    try { localStorage.setItem(SEEN_KEY, String(this.seen)); } catch { /* private mode */ }
    this.updateUnread();
  }

  // --- dialog -------------------------------------------------------------------------------------

  build() {
    const tabs = TABS.map((name) => el("button", {
      type: "button", role: "tab", id: `notify-tab-${name}`, "aria-controls": `notify-panel-${name}`,
      "aria-selected": String(name === this.tab), tabIndex: name === this.tab ? 0 : -1,
      onclick: () => this.show(name),
    }, { history: "History", targets: "Targets", instances: "Per instance" }[name]));
    const tablist = el("div.tabs", { role: "tablist", "aria-label": "Notification views" }, tabs);
    tablist.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const visible = TABS.filter((t) => !$(`#notify-tab-${t}`, this.dialog).hidden);
      const next = visible[(visible.indexOf(this.tab) + step + visible.length) % visible.length];
      this.show(next, true);
    });
    const panel = (name, ...children) => el("section.notify-panel", {
      role: "tabpanel", id: `notify-panel-${name}`, "aria-labelledby": `notify-tab-${name}`, hidden: name !== this.tab,
    }, ...children);

    const addForm = h("form#notify-add.notify-add", { novalidate: true },
      el("h3.sub", {}, "Add a target"),
      h("p.form-error#notify-add-error", { role: "alert", hidden: true }),
      el("div.notify-add-row", {},
        el("label", { for: "notify-name" }, "Name"),
        h("input#notify-name", { name: "name", autocomplete: "off", maxlength: "100", placeholder: "e.g. My phone" }),
        el("label", { for: "notify-url" }, "Apprise URL"),
        h("input#notify-url", { name: "url", autocomplete: "off", spellcheck: "false", placeholder: "ntfy://topic, json://host:port/, discord://id/token…" }),
      ),
      el("p.hint", {}, "Any ",
        el("a", { href: "https://github.com/caronc/apprise/wiki", target: "_blank", rel: "noopener" }, "Apprise URL"),
        ". Saved URLs are never shown back in full."),
      el("div.dialog-buttons", {},
        h("button#notify-url-test", { type: "button", onclick: () => this.testUrl() }, "Send test"),
        h("button.primary#notify-add-submit", { type: "submit" }, "Add target")),
    );
    addForm.addEventListener("submit", (event) => { event.preventDefault(); this.addTarget(); });

    const dialog = h("dialog#notify-dialog.notify-dialog", { "aria-labelledby": "notify-title" },
      el("div.notify-head", {},
        h("h2#notify-title", {}, "Notifications"),
        el("span.spacer"),
        h("button.ghost#notify-close", { type: "button", "aria-label": "Close", onclick: () => dialog.close() }, "✕")),
      tablist,
      panel("history",
        h("p.muted.notify-empty#notify-history-empty", { hidden: true }, "Nothing has happened yet. Crashes, failures, finished jobs, installs, a filling disk and hot GPUs show up here."),
        h("ol#notify-events.notify-events")),
      panel("targets",
        h("p.hint#notify-config"),
        el("table.notify-targets", {},
          el("thead", {}, el("tr", {}, ...["Target", "Sends", "Status", ""].map((h) => el("th", { scope: "col" }, h)))),
          h("tbody#notify-targets-body")),
        h("p.muted#notify-targets-empty", { hidden: true }, "No target yet: add one below, or set AIKORE_NOTIFY_URLS."),
        addForm,
        el("h3.sub", {}, "Delivery problems"),
        h("ul#notify-failures.notify-failures"),
        h("p.muted#notify-failures-empty", {}, "None.")),
      panel("instances",
        el("p.hint", {}, "Which events each instance sends (to the targets that take that kind)."),
        el("table.notify-matrix", {}, h("thead#notify-matrix-head"), h("tbody#notify-matrix-body"))),
    );
    dialog.addEventListener("close", () => this.markSeen());
    $("#notify-tab-targets", dialog).hidden = !this.staff;
    return dialog;
  }

  open() {
    if (!this.dialog.open) this.dialog.showModal();
    this.show(this.unread() ? "history" : this.tab); // news first
  }

  show(name, focus = false) {
    this.tab = TABS.includes(name) && (name !== "targets" || this.staff) ? name : "history";
    for (const tab of TABS) {
      const button = $(`#notify-tab-${tab}`, this.dialog);
      const on = tab === this.tab;
      button.setAttribute("aria-selected", String(on));
      button.tabIndex = on ? 0 : -1;
      $(`#notify-panel-${tab}`, this.dialog).hidden = !on;
      if (on && focus) button.focus();
    }
    if (this.tab === "history") { this.renderHistory(); this.markSeen(); }
    if (this.tab === "targets") this.loadTargets();
    if (this.tab === "instances") this.renderMatrix();
  }

  // --- history ------------------------------------------------------------------------------------

  renderHistory() {
    const list = $("#notify-events", this.dialog);
    const events = this.sortedEvents();
    $("#notify-history-empty", this.dialog).hidden = events.length > 0;
    list.replaceChildren(...events.map((event) => {
      const body = [];
      if (event.message) body.push(el("pre.notify-message", {}, event.message));
      const item = el("li.notify-event", { dataset: { id: event.id, kind: event.kind, level: event.level } },
        el("div.notify-line", {},
          el("time", { datetime: event.created_at, title: event.created_at }, when(event.created_at)),
          el("span.badge.level", { dataset: { level: event.level } }, event.kind_label),
          el("strong.notify-title", {}, event.title),
          event.suppressed_by ? el("span.muted", { title: "Part of an earlier message's story: not sent again." }, "(not re-sent)") : null,
          el("span.spacer"),
          el("span.notify-deliveries", {}, event.deliveries.map(deliveryChip))),
        body.length ? el("details", {}, el("summary", {}, "Details"), ...body) : null);
      item.classList.toggle("coalesced", Boolean(event.suppressed_by));
      return item;
    }));
  }

  // --- targets ------------------------------------------------------------------------------------

  async loadTargets() {
    try {
      const [targets, failures, config] = await Promise.all([
        api("GET", "/notifications/targets"), api("GET", "/notifications/deliveries?limit=20"), api("GET", "/notifications/config"),
      ]);
      this.targets = targets;
      this.renderTargets();
      this.renderFailures(failures);
      const disk = [config.disk_free_percent ? `${config.disk_free_percent} %` : null,
        config.disk_free_bytes ? `${(config.disk_free_bytes / 2 ** 30).toFixed(1)} GiB` : null].filter(Boolean).join(" or ");
      $("#notify-config", this.dialog).textContent =
        `Alerts: data disk below ${disk || "(off)"} free; GPU at ${config.gpu_temp ? config.gpu_temp + " °C" : "(off)"}. ` +
        `Failed deliveries are retried ${config.retries} times; at most ${config.rate_limit_per_minute} messages a minute per target.`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        this.staff = false;
        $("#notify-tab-targets", this.dialog).hidden = true;
        this.show("history");
        return;
      }
      reportError(err, "Targets unavailable");
    }
  }

  renderTargets() {
    const body = $("#notify-targets-body", this.dialog);
    $("#notify-targets-empty", this.dialog).hidden = this.targets.length > 0;
    body.replaceChildren(...this.targets.map((target) => {
      const kinds = this.kinds.map((k) => el("label.check", { title: k.description },
        el("input", { type: "checkbox", checked: target.kinds.includes(k.kind), dataset: { kind: k.kind },
          onchange: (event) => this.setKinds(target, k.kind, event.target.checked) }), k.label));
      const status = target.last_status === "sent" ? el("span.ok", { title: target.last_attempt_at || "" }, `✓ sent ${when(target.last_attempt_at)}`)
        : target.last_status === "failed" ? el("span.error", { title: target.last_attempt_at || "" }, `✗ ${target.last_error || "failed"}`)
          : el("span.muted", {}, "nothing sent yet");
      return el("tr", { dataset: { id: target.id, source: target.source } },
        el("td.target", {},
          el("label.check", {}, el("input.switch", { type: "checkbox", checked: target.enabled, "aria-label": `Send to ${target.name}`,
            onchange: (event) => this.patch(target, { enabled: event.target.checked }) }),
          el("strong", {}, target.name)),
          el("code.masked", {}, target.url),
          target.source === "env" ? el("span.chip", { title: "Set by AIKORE_NOTIFY_URLS" }, "env") : null),
        el("td", {}, el("details.kinds", {}, el("summary", {}, `${target.kinds.length}/${this.kinds.length} kinds`), el("div.kind-list", {}, kinds))),
        el("td.status", {}, status, target.failed_deliveries ? el("div.muted", {}, `${target.failed_deliveries} failed deliveries`) : null),
        el("td.actions", {},
          el("button.notify-test", { type: "button", onclick: (event) => this.testTarget(target, event.currentTarget) }, "Send test"),
          target.source === "env" ? null : el("button.danger", { type: "button", "aria-label": `Delete ${target.name}`, onclick: () => this.remove(target) }, "Delete")));
    }));
  }

  renderFailures(failures) {
    $("#notify-failures-empty", this.dialog).hidden = failures.length > 0;
    $("#notify-failures", this.dialog).replaceChildren(...failures.map((d) => el("li", { dataset: { status: d.status } },
      el("time", {}, when(d.updated_at)), " ", el("strong", {}, d.target_name), ` (${d.target_url}) — ${d.event_title}: `,
      el("span.error", {}, `${d.status} after ${d.attempts} attempt(s)`), d.error ? ` — ${d.error}` : "")));
  }

  async patch(target, changes) {
    try {
      const fresh = await api("PATCH", `/notifications/targets/${target.id}`, changes);
      Object.assign(target, fresh);
    } catch (err) { reportError(err, `${target.name} not changed`); }
    this.renderTargets();
  }

  setKinds(target, kind, on) {
    const kinds = new Set(target.kinds);
    if (on) kinds.add(kind); else kinds.delete(kind);
    return this.patch(target, { kinds: [...kinds] });
  }

  async testTarget(target, button) {
    button.disabled = true;
    button.textContent = "Sending…";
    try {
      const result = await api("POST", `/notifications/targets/${target.id}/test`);
      if (result.ok) toast(`Test sent to ${target.name}.`, "ok");
      else toast(`Test to ${target.name} failed: ${result.error}`, "error");
      Object.assign(target, result.target);
    } catch (err) { reportError(err, "Test failed"); }
    this.renderTargets();
  }

  async remove(target) {
    const answer = await ask({ title: `Delete the target “${target.name}”?`, text: "Its delivery history goes with it.", ok: "Delete", danger: true });
    if (!answer) return;
    try {
      await api("DELETE", `/notifications/targets/${target.id}`);
      this.targets = this.targets.filter((t) => t.id !== target.id);
      this.renderTargets();
    } catch (err) { reportError(err, "Delete failed"); }
  }

  formError(message) {
    const box = $("#notify-add-error", this.dialog);
    box.textContent = message || "";
    box.hidden = !message;
    $("#notify-url", this.dialog).setAttribute("aria-invalid", String(Boolean(message)));
  }

  async addTarget() {
    const name = $("#notify-name", this.dialog).value.trim();
    const url = $("#notify-url", this.dialog).value.trim();
    this.formError("");
    try {
      const target = await api("POST", "/notifications/targets", { name: name || url.split(":")[0], url });
      this.targets.push(target);
      $("#notify-name", this.dialog).value = "";
      $("#notify-url", this.dialog).value = "";
      this.renderTargets();
      toast(`Target ${target.name} added.`, "ok");
    } catch (err) {
      this.formError(err.fields && (err.fields.url || err.fields.name) ? [err.fields.name, err.fields.url].filter(Boolean).join(" ") : err.message);
    }
  }

  async testUrl() {
    const url = $("#notify-url", this.dialog).value.trim();
    this.formError("");
    try {
      const result = await api("POST", "/notifications/test", { url });
      if (result.ok) toast("Test sent.", "ok"); else this.formError(`Not delivered: ${result.error}`);
    } catch (err) { this.formError(err.message); }
  }

  // --- per instance -------------------------------------------------------------------------------

  async renderMatrix() {
    const kinds = this.kinds.filter((k) => k.scope === "instance");
    $("#notify-matrix-head", this.dialog).replaceChildren(el("tr", {}, el("th", { scope: "col" }, "Instance"),
      ...kinds.map((k) => el("th", { scope: "col", title: k.description }, k.label))));
    const body = $("#notify-matrix-body", this.dialog);
    const instances = this.instances.list();
    if (!instances.length) {
      body.replaceChildren(el("tr", {}, el("td.muted", { colSpan: kinds.length + 1 }, "No instances.")));
      return;
    }
    let settings;
    try {
      settings = await Promise.all(instances.map((inst) => api("GET", `/notifications/instances/${inst.id}`)));
    } catch (err) { reportError(err, "Per-instance settings unavailable"); return; }
    body.replaceChildren(...instances.map((inst, i) => el("tr", { dataset: { id: inst.id } },
      el("th", { scope: "row" }, inst.name),
      ...kinds.map((k) => el("td", {}, el("input", {
        type: "checkbox", checked: settings[i].kinds.includes(k.kind), dataset: { kind: k.kind },
        "aria-label": `${inst.name}: ${k.label}`,
        // Choosing an instance's kinds needs the operator role (the API refuses viewers): shown, not offered.
        disabled: !can("operator"), title: can("operator") ? undefined : "Needs the operator role",
        onchange: () => this.saveInstance(inst, body),
      }))))));
  }

  async saveInstance(inst, body) {
    const row = body.querySelector(`tr[data-id="${inst.id}"]`);
    const kinds = [...row.querySelectorAll("input:checked")].map((input) => input.dataset.kind);
    try {
      await api("PUT", `/notifications/instances/${inst.id}`, { kinds });
    } catch (err) { reportError(err, `${inst.name} not saved`); this.renderMatrix(); }
  }
}
