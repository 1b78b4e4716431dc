"""A local HTTP endpoint that receives Apprise's JSON webhook (json://127.0.0.1:PORT/), as a user's
ntfy/Gotify/Discord would, so tests see exactly what would have been sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aikore_site.testing import free_port


class Webhook:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {"invalid": True}
                body["_user_agent"] = self.headers.get("User-Agent", "")
                body["_at"] = time.monotonic()
                with hook._lock:
                    hook.messages.append(body)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def titles(self, containing: str = "") -> list[str]:
        with self._lock:
            return [m.get("title", "") for m in self.messages if containing in m.get("title", "")]

    def wait(self, predicate: Callable[[Webhook], bool], timeout: float = 20.0, what: str = "messages") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; got {self.titles()}")


def closed_port_url() -> str:
    """A json:// URL nothing listens on (connection refused at once)."""
    return f"json://127.0.0.1:{free_port()}/"
