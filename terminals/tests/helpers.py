"""A terminal websocket client that behaves like the dashboard's xterm.js: it collects output,
acknowledges what it read (or not, to play a stalled browser) and types bytes."""

from __future__ import annotations

import json
import re
import time

from django.conf import settings
from django.test import Client
from websockets.sync.client import ClientConnection, unix_connect

ORIGIN = "http://aikore.test"
# What a terminal does not show: CSI/OSC sequences, charset selections, keypad modes, CRs.
_CONTROL = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78Mc]|\r")


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def terminal_path(instance_id: int, cols: int = 100, rows: int = 30) -> str:
    return f"/ws/instances/{instance_id}/terminal/?cols={cols}&rows={rows}"


def connect(path: str, cookie: str | None, origin: str | None = ORIGIN) -> ClientConnection:
    """Straight to the live daphne over its unix socket (the nginx path is the browser test's)."""
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin:
        headers["Origin"] = origin
    return unix_connect(str(settings.DAPHNE_SOCKET), uri=f"ws://aikore.test{path}", additional_headers=headers,
                        open_timeout=15, max_size=None, origin=None)


def visible(data: bytes) -> str:
    return _CONTROL.sub(b"", data).decode("utf-8", errors="replace")


class Term:
    def __init__(self, conn: ClientConnection, ack: bool = True) -> None:
        self._context = conn
        self.conn = conn.__enter__()
        self.ack = ack
        self.out = bytearray()  # everything since the last "attached"
        self.received = 0  # output bytes since the socket opened (what acks count)
        self.messages: list[dict] = []

    def __enter__(self) -> Term:
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)

    def pump(self, timeout: float) -> bool:
        """Read one message; False if none came within timeout."""
        try:
            message = self.conn.recv(timeout=timeout)
        except TimeoutError:
            return False
        if isinstance(message, bytes):
            self.out += message
            self.received += len(message)
            if self.ack:
                self.conn.send(json.dumps({"type": "ack", "bytes": self.received}))
        else:
            parsed = json.loads(message)
            self.messages.append(parsed)
            if parsed.get("type") == "attached":
                self.out = bytearray()
        return True

    def text(self) -> str:
        return visible(bytes(self.out))

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match:
        """Until the output (control sequences removed) matches the regex."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text())
            if match:
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} not in terminal output:\n{self.text()[-3000:]}\n{self.messages}")
            self.pump(min(remaining, 0.5))

    def wait_message(self, kind: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.messages)
        while True:
            for message in self.messages[seen:]:
                if message.get("type") == kind:
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} message; got {self.messages}\n{self.text()[-2000:]}")
            self.pump(min(remaining, 0.5))

    def type(self, text: str) -> None:
        self.conn.send(text.encode("utf-8"))

    def send_json(self, message: dict) -> None:
        self.conn.send(json.dumps(message))

    def run(self, command: str, marker: str, timeout: float = 15.0) -> str:
        """Type a command that ends by echoing `marker-$((6*7))`, so the echo of the typed line
        (which shows the unexpanded form) never matches; return the output before the marker."""
        self.type(f"{command}; echo {marker}-$((6*7))\r")
        match = self.wait_for(re.escape(f"{marker}-42"), timeout)
        return self.text()[:match.start()]
