"""The isolation probe: a test app (standard library only) that shows what reaches an app through
AiKore's proxy, and a page that attacks AiKore from the app's origin.

    GET  /health            "ok"
    GET  /attack            the attack page (attack.html beside this file)
    GET  /ws                websocket echo (blueprints/demo_webui.py's)
    any  anything else      JSON: method, the raw request target as received, headers, body size
                            and SHA-256 (bodies of any size are streamed, never kept); one JSON line
                            per request is appended to $INSTANCE_CONF_DIR/requests.jsonl
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(os.environ["AIKORE_HOME"]) / "blueprints"))
from demo_webui import WebSocketClosed, WebSocketConnection, ws_accept_key

HERE = Path(__file__).resolve().parent
LOG = Path(os.environ.get("INSTANCE_CONF_DIR", ".")) / "requests.jsonl"
CHUNK = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/health"):
            return self.reply(200, b"ok", "text/plain")
        if path.endswith("/attack"):
            return self.reply(200, (HERE / "attack.html").read_bytes(), "text/html; charset=utf-8")
        if path.endswith("/ws") and self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        return self.describe()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = describe = None  # set below

    def body_digest(self) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    self.rfile.readline()
                    break
                remaining = length
                while remaining:
                    data = self.rfile.read(min(CHUNK, remaining))
                    digest.update(data)
                    remaining -= len(data)
                self.rfile.readline()
                size += length
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(CHUNK, remaining))
                if not data:
                    break
                digest.update(data)
                size += len(data)
                remaining -= len(data)
        return size, digest.hexdigest()

    def _describe(self) -> None:
        size, sha = self.body_digest()
        record = {"method": self.command, "target": self.path, "headers": [[k, v] for k, v in self.headers.items()],
                  "body_size": size, "body_sha256": sha}
        with open(LOG, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self.reply(200, json.dumps(record).encode(), "application/json")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def websocket(self) -> None:
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", ws_accept_key(self.headers.get("Sec-WebSocket-Key", "")))
        self.end_headers()
        self.wfile.flush()
        try:
            WebSocketConnection(self.rfile, self.wfile).echo_forever()
        except (WebSocketClosed, OSError):
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


Handler.describe = Handler._describe
Handler.do_POST = Handler.do_PUT = Handler.do_DELETE = Handler.do_PATCH = Handler.do_OPTIONS = Handler._describe
Handler.do_HEAD = Handler.do_GET


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEBUI_PORT"])), Handler)
    server.daemon_threads = True
    print(f"isolation probe on {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
