// The Terminal tab: a shell in the selected instance's directory and environment (its variables,
// its Python environment, its GPUs), in xterm.js over /ws/instances/<id>/terminal/. The shell lives
// in a tmux session on the server, so closing the tab, a network drop or a restart of AiKore's web
// process loses nothing: reconnecting shows the same screen with its scrollback.
// Flow control: each chunk of output is acknowledged once xterm.js has parsed it, and the server
// keeps at most a window of unacknowledged bytes in flight, so a flood (`yes`) cannot pile up here.
// Copy: select, then Ctrl+C (with a selection) or Ctrl+Shift+C. Paste: Ctrl+Shift+V or Ctrl+V.

import { ask, reportError } from "./util.js";

let xt = null; // the xterm.js bundle (static/dist/xterm.js), imported on first use
const encoder = new TextEncoder();

const LIGHT_PALETTE = {
  black: "#1d2330", red: "#c62828", green: "#1b7f3b", yellow: "#8a5a00", blue: "#2563eb",
  magenta: "#a21caf", cyan: "#0b6e99", white: "#5f6b7a", brightBlack: "#5f6b7a", brightRed: "#d32f2f",
  brightGreen: "#2e7d32", brightYellow: "#a15c00", brightBlue: "#1d4ed8", brightMagenta: "#c026d3",
  brightCyan: "#0e7490", brightWhite: "#1d2330",
};

function theme() {
  const css = getComputedStyle(document.documentElement);
  const value = (name) => css.getPropertyValue(name).trim();
  const dark = css.colorScheme === "dark" || document.documentElement.dataset.theme === "dark";
  return {
    ...(dark ? {} : LIGHT_PALETTE),
    background: value("--log-bg"), foreground: value("--log-fg"), cursor: value("--log-fg"),
    cursorAccent: value("--log-bg"), selectionBackground: dark ? "rgba(91, 141, 239, 0.4)" : "rgba(37, 99, 235, 0.25)",
  };
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain http on another host is not a secure context: the older way still works there.
    const area = document.createElement("textarea");
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

export class TerminalPane {
  constructor({ root, status, newShell }) {
    this.root = root;
    this.statusEl = status;
    this.newShellBtn = newShell;
    this.instance = null;
    this.term = null;
    this.fitAddon = null;
    this.ws = null;
    this.visible = false;
    this.ended = false;
    this.retryDelay = 500;
    this.retryTimer = null;
    this.received = 0; // output bytes that arrived since this socket opened
    this.processed = 0; // of those, parsed by xterm.js (what the acks say)
    this.lastError = "";
    this.ackTimer = null;
    newShell.addEventListener("click", () => this.newShell());
    new ResizeObserver(() => this.scheduleFit()).observe(root);
    new MutationObserver(() => this.term && (this.term.options.theme = theme()))
      .observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    this.setStatus("");
  }

  // Called on every refresh of the detail pane: the selected instance, and whether this tab shows.
  attach(instance, visible) {
    if (this.instance && (!instance || instance.id !== this.instance.id)) this.detach();
    const appearing = visible && !this.visible;
    this.visible = visible;
    this.newShellBtn.disabled = !instance;
    if (!instance) {
      this.setStatus("Select an instance to open a shell in its environment.");
      return;
    }
    this.instance = instance;
    if (!visible) return;
    this.open()
      .then(() => {
        this.scheduleFit();
        if (appearing) this.term.focus();
      })
      .catch((err) => reportError(err, "Terminal unavailable"));
  }

  detach() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.instance = null;
    this.ended = false;
    this.lastError = "";
    if (this.term) this.term.reset();
  }

  async open() {
    if (!this.term) {
      xt ||= await import("xterm-bundle");
      if (this.term) return;
      this.term = new xt.Terminal({
        scrollback: 10000, cursorBlink: true,
        fontFamily: 'ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace',
        fontSize: 13, theme: theme(),
      });
      this.fitAddon = new xt.FitAddon();
      this.term.loadAddon(this.fitAddon);
      this.term.open(this.root);
      this.term.onData((data) => this.sendBytes(encoder.encode(data)));
      this.term.onBinary((data) => this.sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));
      this.term.onResize(({ cols, rows }) => this.send({ type: "resize", cols, rows }));
      this.term.attachCustomKeyEventHandler((event) => this.onKey(event));
      this.fit();
    }
    if (!this.ws && !this.retryTimer && this.instance) this.connect();
  }

  onKey(event) {
    if (event.type !== "keydown" || !event.ctrlKey || event.altKey || event.metaKey) return true;
    if (event.code === "KeyC" && (event.shiftKey || this.term.hasSelection())) {
      const text = this.term.getSelection();
      if (text) copyText(text).catch((err) => reportError(err, "Copy failed"));
      if (!event.shiftKey) this.term.clearSelection();
      event.preventDefault();
      return false;
    }
    // Ctrl+Shift+V (and Ctrl+V): let the browser paste; xterm.js receives the paste event.
    if (event.code === "KeyV") return false;
    return true;
  }

  connect() {
    const id = this.instance.id;
    const { cols, rows } = this.term;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/instances/${id}/terminal/?cols=${cols}&rows=${rows}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.received = 0;
    this.processed = 0;
    this.setStatus("Connecting…");
    ws.onopen = () => { this.retryDelay = 500; };
    ws.onmessage = (event) => { if (ws === this.ws) this.onMessage(ws, event.data); };
    ws.onclose = (event) => { if (ws === this.ws) this.onClose(event); };
  }

  onMessage(ws, data) {
    if (typeof data !== "string") {
      const bytes = new Uint8Array(data);
      this.received += bytes.length;
      this.term.write(bytes, () => this.ack(ws, bytes.length));
      return;
    }
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg.type === "attached") {
      // The server sends the scrollback and the screen next: start from a clean terminal.
      this.term.reset();
      this.ended = false;
      this.lastError = "";
      // The pane may have changed size while the socket was connecting (resizes are not queued).
      this.send({ type: "resize", cols: this.term.cols, rows: this.term.rows });
      this.setStatus(msg.stale
        ? "Connected. This shell started before the instance's settings last changed: “New shell” starts one with the current settings."
        : msg.created ? "Connected to a new shell." : "Connected.");
    } else if (msg.type === "ended") {
      this.ended = true;
      this.term.write("\r\n\x1b[2m[the shell has ended]\x1b[0m\r\n");
      this.setStatus("The shell has ended. “New shell” starts another.");
    } else if (msg.type === "error") {
      this.lastError = msg.message;
      this.setStatus(msg.message, "error");
    }
  }

  ack(ws, length) {
    if (ws !== this.ws) return; // a previous connection's output
    this.processed += length;
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.send({ type: "ack", bytes: this.processed });
    }, 0);
  }

  onClose(event) {
    this.ws = null;
    if (!this.instance) return;
    if (event.code === 4404) {
      this.setStatus("This instance no longer exists.", "error");
      return;
    }
    if (event.code === 4401) {
      // The server ended it because this session may no longer have it (logout, role changed):
      // the dashboard's own stream takes the page to the sign-in page.
      this.setStatus("Your access to this terminal ended.", "error");
      return;
    }
    const seconds = Math.round(this.retryDelay / 100) / 10;
    if (this.lastError) this.setStatus(`${this.lastError} Retrying in ${seconds} s…`, "error");
    else this.setStatus(`Disconnected; reconnecting in ${seconds} s… (the shell keeps running)`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.instance && this.term) this.connect();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 8000);
  }

  async newShell() {
    if (!this.instance) return;
    if (!this.ended) {
      const answer = await ask({
        title: "Start a new shell?", ok: "New shell", danger: true,
        text: `This ends the running shell of ${this.instance.name} and everything started in it.`,
      });
      if (!answer) return;
    }
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.setStatus("Starting a new shell…");
      this.send({ type: "new_shell" });
    } else {
      await this.open();
    }
    if (this.term) this.term.focus();
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  sendBytes(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && !this.ended) this.ws.send(bytes);
  }

  scheduleFit() {
    if (this.fitFrame) return;
    this.fitFrame = requestAnimationFrame(() => {
      this.fitFrame = null;
      this.fit();
    });
  }

  fit() {
    // A hidden panel has no size; fitting it would shrink the shell to nothing.
    if (this.fitAddon && this.visible && this.root.clientWidth > 0 && this.root.clientHeight > 0) this.fitAddon.fit();
  }

  setStatus(text, kind = "") {
    this.statusEl.textContent = text;
    this.statusEl.classList.toggle("error", kind === "error");
  }

  // The terminal's text, scrollback included (for the browser tests and debugging).
  text() {
    if (!this.term) return "";
    const buffer = this.term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) {
      const line = buffer.getLine(i);
      if (line) lines.push(line.translateToString(true));
    }
    return lines.join("\n").replace(/\n+$/, "");
  }
}
