"""Throwaway AiKore stacks for tests that need one configured unlike the session's live stack
(synthetic GPUs, Redis, ...): docker/entry.sh with its own data dir, port and admin account, in its
own process group, killed as a group when the `with` block ends."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from aikore_site.testing import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_USER = "admin"


@dataclass
class ThrowawayStack:
    proc: subprocess.Popen
    base_url: str
    port: int
    data_dir: Path
    log_path: Path
    admin_password: str
    apps_port: int = 0

    @property
    def apps_url(self) -> str:
        return f"http://127.0.0.1:{self.apps_port}"

    def log(self) -> str:
        parts = [self.log_path.read_text(errors="replace") if self.log_path.exists() else ""]
        for name in ("daphne.log", "worker.log", "watcher.log"):
            path = self.data_dir / "logs" / name
            if path.exists():
                parts.append(f"--- {name} ---\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


class RetryStaleConnection(httpx.HTTPTransport):
    """Sends a request once more on a fresh connection when the kept-alive one it went out on
    turns out to be closed. nginx closes idle keep-alive connections when a reload retires their
    worker (every instance start and stop reloads it): a request sent on one at that moment fails
    before any byte of a response, with "Server disconnected without sending a response" or a
    connection reset, and nginx never read it (it closed the connection as idle), so sending it
    again is safe, POSTs included. Browsers do the same; a client without it is flaky against the
    stack."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.RemoteProtocolError as exc:
            if "without sending a response" not in str(exc):
                raise
        except (httpx.ReadError, httpx.WriteError):
            pass  # a reset before the response began (response errors after that are not caught here)
        return super().handle_request(request)


def stack_client(base_url: str = "", **kwargs: object) -> httpx.Client:
    """An httpx client for a stack's nginx that survives nginx reloads (RetryStaleConnection)."""
    return httpx.Client(base_url=base_url, transport=RetryStaleConnection(), **kwargs)


def kill_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group proc leads, SIGKILL it if it outlives `timeout`."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def open_for_stack_users(path: Path) -> None:
    """Run as root, a stack runs as two unprivileged users (aikore_site/privileges.py), which must
    pass through the test's temporary folders (pytest makes them 0700) to reach its data dir."""
    if os.geteuid() != 0:
        return
    tmp = Path(tempfile.gettempdir()).resolve()
    for parent in Path(path).resolve().parents:
        if tmp not in parent.parents:
            continue
        mode = stat.S_IMODE(parent.stat().st_mode)
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@contextmanager
def throwaway_stack(workdir: Path, name: str, env: dict[str, str] | None = None,
                    admin_password: str = "throwaway-admin-password",
                    instance_port_range: str = "29501-29550", timeout: float = 60,
                    bind: str = "127.0.0.1", port: int | None = None,
                    apps_port: int | None = None) -> Iterator[ThrowawayStack]:
    """Start a stack under workdir/<name> and wait until nginx answers /api/health on its port
    (a free one unless given: a second start on the same data dir passes the first one's; on `bind`, another loopback address when a test puts a proxy on 127.0.0.1 with the same ports)."""
    port, apps_port = port or free_port(), apps_port or free_port()
    data_dir = workdir / name
    log_path = workdir / f"{name}.log"
    full_env = {**os.environ, "AIKORE_DATA_DIR": str(data_dir), "AIKORE_PORT": str(port),
                "AIKORE_APPS_PORT": str(apps_port), "AIKORE_BIND": bind,
                "AIKORE_ADMIN_PASSWORD": admin_password, "AIKORE_INSTANCE_PORT_RANGE": instance_port_range,
                "AIKORE_PUBLIC_PORT_RANGE": "", "AIKORE_HOME": str(REPO),
                "AIKORE_PYTHON": str(REPO / ".venv" / "bin" / "python"), **(env or {})}
    full_env.pop("AIKORE_TEST_DATA_DIR", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    open_for_stack_users(data_dir)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(REPO / "docker" / "entry.sh")], stdout=log, stderr=subprocess.STDOUT,
                                env=full_env, start_new_session=True)
    stack = ThrowawayStack(proc, f"http://{bind}:{port}", port, data_dir, log_path, admin_password, apps_port)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(stack.base_url + "/api/health", timeout=2).json().get("nginx"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"throwaway stack {name} did not come up:\n{stack.log()[-4000:]}")
            time.sleep(0.2)
        yield stack
    finally:
        kill_group(proc)
