"""The image's HEALTHCHECK script (docker/healthcheck.py), run as Docker runs it: healthy only when
/api/health on AIKORE_PORT says "ok"; a degraded stack (HTTP 200 too) or no answer is unhealthy, with
the problem codes (all an anonymous caller gets) in the output Docker keeps."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aikore_site.testing import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def healthcheck(port: int) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AIKORE_PORT": str(port), "AIKORE_BIND": "0.0.0.0",
           "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # never used
    return subprocess.run([sys.executable, "-I", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def degraded_health() -> Iterator[int]:
    """A server answering /api/health as a degraded AiKore does to anonymous callers."""
    body = json.dumps({"status": "degraded", "codes": ["nginx_down", "disk_low"], "db": True,
                       "disk": {"low": True}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.stack
def test_healthy_when_the_stack_on_the_configured_port_says_ok(live) -> None:
    result = healthcheck(live.port)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stdout + result.stderr


def test_unhealthy_when_degraded_saying_why_or_when_nothing_answers(degraded_health: int) -> None:
    result = healthcheck(degraded_health)
    assert result.returncode == 1
    assert result.stdout.strip() == "AiKore is degraded: nginx_down, disk_low"
    result = healthcheck(free_port())
    assert result.returncode == 1 and "AiKore is not answering at http://127.0.0.1:" in result.stdout
