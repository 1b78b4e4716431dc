"""AiKore's demo WebUI: a tiny web app for trying AiKore without a GPU or internet access.

Standard library only. Listens on 127.0.0.1:$WEBUI_PORT and serves, with relative URLs only (so
it works at ``/`` and behind a prefix-stripping proxy at $SUBFOLDER):

    GET /           an HTML page: instance details, a websocket echo and an SSE clock
    GET /env        the blueprint-contract environment as JSON
    GET /health     "ok"
    GET /events     server-sent events, ``data: <n> <iso time>`` every 0.5 s (``?count=N`` stops)
    GET /ws         websocket (RFC 6455) echo
    GET /echo?n=X   plain-text echo of X (benchmarks)
    GET /stats      JSON: websockets open now and accepted since start, event streams open now
                    (evidence that a page, e.g. a kiosk browser's, kept one connection all along)

One line per request goes to stdout (``GET /env 200``). SIGTERM and SIGINT exit with status 0.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import signal
import struct
import sys
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

ENV_KEYS = (
    "WEBUI_PORT", "INSTANCE_NAME", "INSTANCE_SLUG", "INSTANCE_CONF_DIR", "INSTANCE_OUTPUT_DIR",
    "AIKORE_MODELS_DIR", "SUBFOLDER", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "BLUEPRINT_ID",
    "AIKORE_LAUNCH_ARGS", "PYTHONUNBUFFERED",
)
EVENT_INTERVAL = 0.5
ECHO_MAX_CHARS = 4096
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_MAX_MESSAGE = 16 * 1024 * 1024


class Stats:
    """Live connection counts (GET /stats)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.websockets_open = 0
        self.websockets_total = 0
        self.event_streams_open = 0

    def add(self, field: str, delta: int) -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + delta)
            if field == "websockets_open" and delta > 0:
                self.websockets_total += delta

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"websockets_open": self.websockets_open, "websockets_total": self.websockets_total,
                    "event_streams_open": self.event_streams_open}


STATS = Stats()


def log(line: str) -> None:
    print(line, flush=True)


# --- websocket framing (RFC 6455) ---------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketClosed(Exception):
    """The peer went away or broke the protocol; carries the close code to send (if any)."""

    def __init__(self, code: int | None = None) -> None:
        super().__init__(code)
        self.code = code


def ws_accept_key(key: str) -> str:
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def ws_encode_frame(opcode: int, payload: bytes) -> bytes:
    """A single unmasked (server-to-client) final frame."""
    length = len(payload)
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([length])
    elif length < 1 << 16:
        head += bytes([126]) + struct.pack("!H", length)
    else:
        head += bytes([127]) + struct.pack("!Q", length)
    return head + payload


def ws_unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


class WebSocketConnection:
    """Reads and writes frames on the handler's buffered socket files."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO) -> None:
        self.rfile = rfile
        self.wfile = wfile

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size) if size else b""
        if len(data) != size:
            raise WebSocketClosed()
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise WebSocketClosed(1002)  # no extensions negotiated
        if not second & 0x80:
            raise WebSocketClosed(1002)  # client frames must be masked
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        if length > WS_MAX_MESSAGE:
            raise WebSocketClosed(1009)
        mask = self._read_exact(4)
        return fin, opcode, ws_unmask(self._read_exact(length), mask)

    def send(self, opcode: int, payload: bytes) -> None:
        self.wfile.write(ws_encode_frame(opcode, payload))
        self.wfile.flush()

    def close(self, code: int) -> None:
        try:
            self.send(OP_CLOSE, struct.pack("!H", code))
        except OSError:
            pass

    def echo_forever(self) -> None:
        """Echo data messages (reassembling fragments), answer pings, return on close."""
        message_opcode, parts = None, []
        while True:
            fin, opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                self.send(OP_CLOSE, payload[:2])
                return
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
            elif opcode == OP_PONG:
                continue
            elif opcode in (OP_TEXT, OP_BINARY) and message_opcode is None:
                message_opcode, parts = opcode, [payload]
            elif opcode == OP_CONT and message_opcode is not None:
                parts.append(payload)
            else:
                raise WebSocketClosed(1002)
            if opcode in (OP_TEXT, OP_BINARY, OP_CONT) and fin:
                self.send(message_opcode, b"".join(parts))
                message_opcode, parts = None, []


# --- HTML page -----------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AiKore Demo WebUI - {name}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 50rem; color: #222; }}
 table {{ border-collapse: collapse; }}
 td, th {{ padding: .2rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
 code, #log, #clock {{ font-family: ui-monospace, monospace; }}
 #log {{ background: #f4f4f4; padding: .5rem; min-height: 4rem; white-space: pre-wrap; }}
</style>
</head>
<body>
<h1>AiKore Demo WebUI</h1>
<table>
 <tr><th>Instance</th><td>{name}</td></tr>
 <tr><th>SUBFOLDER</th><td><code>{subfolder}</code></td></tr>
 <tr><th>CUDA_VISIBLE_DEVICES</th><td><code>{gpus}</code></td></tr>
 <tr><th>Page URL</th><td><code id="here"></code></td></tr>
</table>
<p><a href="env">Environment (JSON)</a> &middot; <a href="health">Health</a></p>
<h2>Server-sent events clock</h2>
<p id="clock">connecting...</p>
<h2>Websocket echo</h2>
<form id="wsform"><input id="msg" value="hello" autocomplete="off" autofocus> <button>Send</button></form>
<div id="log"></div>
<script>
// Everything is relative to this page's directory, so the app works behind a path prefix.
const base = location.pathname.replace(/[^/]*$/, "");
document.getElementById("here").textContent = location.href;
const clock = document.getElementById("clock");
new EventSource(base + "events").onmessage = (e) => {{ clock.textContent = e.data; }};
const logBox = document.getElementById("log");
const say = (line) => {{ logBox.textContent += line + "\\n"; }};
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "ws");
ws.onopen = () => say("[open]");
ws.onmessage = (e) => say("< " + e.data);
ws.onclose = (e) => say("[closed " + e.code + "]");
document.getElementById("wsform").onsubmit = (e) => {{
  e.preventDefault();
  const text = document.getElementById("msg").value;
  ws.send(text);
  say("> " + text);
}};
</script>
</body>
</html>
"""


def render_page() -> bytes:
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return PAGE.format(
        name=html.escape(os.environ.get("INSTANCE_NAME", "(not run by AiKore)")),
        subfolder=html.escape(os.environ.get("SUBFOLDER", "/")),
        gpus=html.escape(gpus if gpus is not None else "(unset: all GPUs)"),
    ).encode("utf-8")


def environment() -> dict[str, str | None]:
    data: dict[str, str | None] = {key: os.environ.get(key) for key in ENV_KEYS}
    data["cwd"] = os.getcwd()
    return data


# --- HTTP handler ----------------------------------------------------------------------------------


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, each keep-alive response would
    # wait ~40 ms for the delayed ACK.
    disable_nagle_algorithm = True
    server_version = "AiKoreDemo/1.0"

    def do_GET(self) -> None:
        self.route(head=False)

    def do_HEAD(self) -> None:
        self.route(head=True)

    def route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = strip_prefix(url.path)
        query = parse_qs(url.query)
        simple = {
            "/echo": lambda: self.send_text(query.get("n", [""])[0][:ECHO_MAX_CHARS], head),
            "/health": lambda: self.send_text("ok", head),
            "/": lambda: self.send_body(render_page(), "text/html; charset=utf-8", head),
            "/env": lambda: self.send_json(environment(), head),
            "/stats": lambda: self.send_json(STATS.snapshot(), head),
        }
        if path in simple:
            simple[path]()
        elif path == "/events" and not head:
            self.stream_events(query)
        elif path == "/ws" and not head:
            self.websocket()
        else:
            self.send_text("not found", head, HTTPStatus.NOT_FOUND)

    # responses

    def send_body(self, body: bytes, content_type: str, head: bool, status: int = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_text(self, text: str, head: bool, status: int = HTTPStatus.OK) -> None:
        self.send_body(text.encode("utf-8"), "text/plain; charset=utf-8", head, status)

    def send_json(self, data: object, head: bool) -> None:
        self.send_body(json.dumps(data, indent=1).encode("utf-8"), "application/json", head)

    def stream_events(self, query: dict[str, list[str]]) -> None:
        try:
            count = int(query["count"][0]) if "count" in query else None
        except ValueError:
            self.send_text("count must be an integer", False, HTTPStatus.BAD_REQUEST)
            return
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Connection", "close")
        self.end_headers()
        n = 0
        STATS.add("event_streams_open", 1)
        try:
            while count is None or n < count:
                if n:
                    time.sleep(EVENT_INTERVAL)
                n += 1
                stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
                self.wfile.write(f"data: {n} {stamp}\n\n".encode("ascii"))
                self.wfile.flush()
        except OSError:
            pass  # the client went away
        finally:
            STATS.add("event_streams_open", -1)

    def websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        upgrade = self.headers.get("Upgrade", "").lower() == "websocket"
        connection = "upgrade" in self.headers.get("Connection", "").lower()
        if not (upgrade and connection and key and self.headers.get("Sec-WebSocket-Version") == "13"):
            self.send_text("expected a websocket upgrade (version 13)", False, HTTPStatus.BAD_REQUEST)
            return
        self.close_connection = True
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept_key(key))
        self.end_headers()
        self.wfile.flush()
        conn = WebSocketConnection(self.rfile, self.wfile)
        STATS.add("websockets_open", 1)
        try:
            conn.echo_forever()
        except WebSocketClosed as closed:
            if closed.code is not None:
                conn.close(closed.code)
        except OSError:
            pass
        finally:
            STATS.add("websockets_open", -1)

    # logging: exactly one line per request, on stdout

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log(f"{self.command or '-'} {getattr(self, 'path', '-')} {int(code)}")

    def log_message(self, format: str, *args: object) -> None:
        pass  # errors are already reported through log_request


def strip_prefix(path: str) -> str:
    """Accept requests that still carry the public prefix (a proxy that does not strip it)."""
    prefix = os.environ.get("SUBFOLDER", "").rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix):]
    return path or "/"


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="AiKore demo WebUI")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $WEBUI_PORT")
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        log(f"ignoring unknown arguments: {' '.join(unknown)}")
    if args.port is None:
        try:
            args.port = int(os.environ["WEBUI_PORT"])
        except (KeyError, ValueError):
            parser.error("WEBUI_PORT must be set to a port number (or pass --port)")
    return args


def exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_cleanly)
    signal.signal(signal.SIGINT, exit_cleanly)
    server = ThreadingHTTPServer((args.host, args.port), DemoHandler)
    log(f"AiKore demo WebUI listening on http://{args.host}:{args.port}/ (SUBFOLDER={os.environ.get('SUBFOLDER', '')})")
    try:
        server.serve_forever(poll_interval=0.25)
    except SystemExit:
        log("stopping")
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
