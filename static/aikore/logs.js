// The log console: follows /ws/instances/{id}/logs/ (REST polling when websockets are unavailable),
// renders ANSI colours, shows carriage-return progress bars (tqdm) as one updating line, and keeps
// the DOM small: text is applied once per animation frame and only the last MAX_LINES lines stay.

import { renderAnsi, initialState, stripAnsi } from "./ansi.js";
import { api, liveSocket, el, reportError, toast } from "./util.js";

const MAX_LINES = 5000;
const MAX_PARTIAL = 64 * 1024; // a "line" without newline longer than this is cut
const MAX_PENDING = 4 * 1024 * 1024; // text kept while paused
const DOWNLOAD_CHUNK = 1024 * 1024;

// What a terminal shows for a line containing carriage returns: the text after the last one.
function visible(line) {
  let end = line.length;
  while (end > 0 && line[end - 1] === "\r") end--;
  return line.slice(line.lastIndexOf("\r", end - 1) + 1, end);
}

export class LogConsole {
  constructor({ view, status, matches, follow, pause, search, clear, download }) {
    Object.assign(this, { view, statusEl: status, matchesEl: matches, followBtn: follow, pauseBtn: pause, searchEl: search });
    this.instance = null;
    this.following = true;
    this.paused = false;
    this.query = "";
    this.reset();
    follow.addEventListener("click", () => this.setFollow(!this.following));
    pause.addEventListener("click", () => this.setPaused(!this.paused));
    search.addEventListener("input", () => this.filter(search.value));
    search.addEventListener("keydown", (e) => { if (e.key === "Escape") { search.value = ""; this.filter(""); view.focus(); } });
    clear.addEventListener("click", () => this.clearView());
    download.addEventListener("click", () => this.download().catch((err) => reportError(err, "Download failed")));
    view.addEventListener("scroll", () => {
      const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 24;
      if (atBottom !== this.following && !this.programmaticScroll) this.setFollow(atBottom, false);
      this.programmaticScroll = false;
    });
  }

  reset() {
    this.queue = "";
    this.pending = "";
    this.partial = "";
    this.partialEl = null;
    this.ansi = initialState();
    this.offset = null;
    this.lines = 0;
    this.trimmed = 0;
    this.frame = null;
    this.view.replaceChildren();
  }

  attach(instance) {
    if (this.instance && instance && this.instance.id === instance.id) return;
    this.detach();
    this.instance = instance;
    if (!instance) { this.setStatus(""); return; }
    this.connect();
  }

  detach() {
    if (this.socket) this.socket.close();
    clearTimeout(this.pollTimer);
    this.socket = null;
    this.pollTimer = null;
    this.instance = null;
    this.reset();
  }

  connect() {
    const id = this.instance.id;
    let everUp = false;
    let failures = 0;
    this.connState = "connecting";
    this.socket = liveSocket(
      () => `/ws/instances/${id}/logs/` + (this.offset !== null ? `?offset=${this.offset}` : "?lines=1000"),
      {
        onMessage: (msg) => this.onMessage(msg),
        onState: (state) => {
          this.connState = state;
          everUp ||= state === "up";
          if (state === "down" && !everUp && ++failures >= 2) {
            // No log websocket on this server: follow the log over the REST API instead.
            this.socket.close();
            this.socket = null;
            this.poll(id);
          }
          this.updateStatus();
        },
      },
    );
  }

  async poll(id) {
    if (!this.instance || this.instance.id !== id) return;
    this.connState = "polling";
    try {
      const offset = this.offset === null ? -65536 : this.offset;
      const chunk = await api("GET", `/instances/${id}/logs?offset=${offset}&limit=262144`);
      if (!this.instance || this.instance.id !== id) return;
      if (chunk.skipped) this.note(`… ${chunk.skipped} bytes no longer available …`);
      this.offset = chunk.next_offset;
      if (chunk.data) this.receive(chunk.data);
      else this.updateStatus();
    } catch (err) {
      if (err.status === 404) return;
    }
    this.pollTimer = setTimeout(() => this.poll(id), 1000);
  }

  onMessage(msg) {
    if (msg.type === "backfill" || msg.type === "append") {
      if (typeof msg.offset === "number") this.offset = msg.offset;
      if (msg.data) this.receive(msg.data);
      else this.updateStatus();
      // Flow control: the server keeps at most a window of unacknowledged bytes in flight.
      if (this.socket && typeof msg.offset === "number") this.socket.send({ type: "ack", offset: msg.offset });
    } else if (msg.type === "dropped") {
      if (typeof msg.offset === "number") this.offset = msg.offset;
      this.receive("");
      this.note(`… ${msg.bytes} bytes skipped (output too fast; download the full log to see them) …`);
    } else if (msg.type === "rotated") {
      this.note("… log file rotated …");
    } else if (msg.type === "error") {
      this.note(msg.detail || msg.message || "log unavailable");
    }
  }

  receive(text) {
    if (this.paused) {
      this.pending += text;
      if (this.pending.length > MAX_PENDING) this.pending = this.pending.slice(-MAX_PENDING);
      this.updateStatus();
      return;
    }
    this.queue += text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  // Turn queued text into DOM lines: at most one pass per frame, however chatty the process.
  flush() {
    this.frame = null;
    const parts = (this.partial + this.queue).split("\n");
    this.queue = "";
    let partial = parts.pop();
    const end = partial.endsWith("\r") ? partial.length - 1 : partial.length;
    const cr = partial.lastIndexOf("\r", end - 1);
    if (cr > 0) partial = partial.slice(cr); // only the latest progress-bar state matters
    if (partial.length > MAX_PARTIAL) { parts.push(partial); partial = ""; }
    this.partial = partial;

    let complete = parts;
    if (complete.length > MAX_LINES) {
      this.trimmed += complete.length - MAX_LINES;
      complete = complete.slice(-MAX_LINES);
    }
    const fragment = document.createDocumentFragment();
    for (const line of complete) fragment.append(this.lineNode(line, true));
    if (this.partialEl) this.partialEl.remove();
    this.partialEl = partial ? this.lineNode(partial, false) : null;
    if (this.partialEl) { this.partialEl.classList.add("partial"); fragment.append(this.partialEl); }
    this.view.append(fragment);
    this.lines += complete.length;
    const excess = this.view.childElementCount - MAX_LINES;
    for (let k = 0; k < excess; k++) this.view.firstElementChild.remove();
    if (excess > 0) this.trimmed += excess;
    if (this.query) this.countHits();
    if (this.following) this.scrollToEnd();
    this.updateStatus();
  }

  lineNode(raw, commit) {
    const node = el("div.ln");
    const state = renderAnsi(visible(raw), this.ansi, node);
    if (commit) this.ansi = state;
    if (this.query) this.mark(node);
    return node;
  }

  note(text) {
    const node = el("div.ln.note", {}, text);
    if (this.partialEl) this.partialEl.before(node); else this.view.append(node);
    if (this.query) this.mark(node);
    if (this.following) this.scrollToEnd();
  }

  mark(node) {
    node.classList.toggle("hit", node.textContent.toLowerCase().includes(this.query));
  }

  filter(query) {
    this.query = query.trim().toLowerCase();
    this.view.classList.toggle("filtering", Boolean(this.query));
    for (const node of this.view.children) {
      if (this.query) this.mark(node); else node.classList.remove("hit");
    }
    this.countHits();
    if (this.following) this.scrollToEnd();
  }

  countHits() {
    const hits = this.query ? this.view.querySelectorAll(".hit").length : 0;
    this.matchesEl.textContent = this.query ? `${hits} match${hits === 1 ? "" : "es"}` : "";
  }

  setFollow(on, scroll = true) {
    this.following = on;
    this.followBtn.setAttribute("aria-pressed", String(on));
    if (on && scroll) this.scrollToEnd();
  }

  setPaused(on) {
    this.paused = on;
    this.pauseBtn.setAttribute("aria-pressed", String(on));
    this.pauseBtn.textContent = on ? "Resume" : "Pause";
    if (!on && this.pending) {
      const text = this.pending;
      this.pending = "";
      this.receive(text);
    }
    this.updateStatus();
  }

  clearView() {
    this.view.replaceChildren();
    this.partialEl = null;
    this.trimmed = 0;
    this.lines = 0;
    if (this.partial) this.receive("");
    this.filter(this.searchEl.value);
    this.updateStatus();
  }

  scrollToEnd() {
    this.programmaticScroll = true;
    this.view.scrollTop = this.view.scrollHeight;
  }

  setStatus(text) { this.statusEl.textContent = text; }

  updateStatus() {
    if (!this.instance) return this.setStatus("");
    const bits = [`${this.view.childElementCount} lines shown`];
    if (this.trimmed) bits.push(`${this.trimmed} older lines dropped from view`);
    if (this.offset !== null) bits.push(`offset ${this.offset}`);
    if (this.paused) bits.push(`paused (${this.pending.length} bytes waiting)`);
    bits.push(this.connState === "up" ? "live" : this.connState);
    this.setStatus(bits.join(" · "));
  }

  // The whole log (all rotated generations still on disk), fetched in chunks over the REST API.
  async download() {
    if (!this.instance) return;
    const { id, slug } = this.instance;
    const parts = [];
    let offset = 0;
    for (let n = 0; n < 512; n++) {
      const chunk = await api("GET", `/instances/${id}/logs?offset=${offset}&limit=${DOWNLOAD_CHUNK}`);
      if (chunk.data) parts.push(chunk.data);
      if (!chunk.data || chunk.next_offset >= chunk.size) break;
      offset = chunk.next_offset;
    }
    const url = URL.createObjectURL(new Blob(parts, { type: "text/plain" }));
    const link = el("a", { href: url, download: `${slug || "instance-" + id}.log` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    toast(`Downloaded ${slug}.log`, "ok");
  }

  // Plain text of what is shown (used by tests and copy helpers).
  text() {
    return Array.from(this.view.children, (n) => stripAnsi(n.textContent)).join("\n");
  }
}
