"""Throwaway AiKore stacks for tests that need one configured unlike the session's live stack
(synthetic GPUs, Redis, ...): docker/entry.sh with its own data dir, port and admin account, in its
own process group, killed as a group when the `with` block ends."""

from __future__ import annotations

import os
import signal
import subprocess
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


@contextmanager
def throwaway_stack(workdir: Path, name: str, env: dict[str, str] | None = None,
                    admin_password: str = "throwaway-admin-password",
                    instance_port_range: str = "29501-29550", timeout: float = 60,
                    bind: str = "127.0.0.1", port: int | None = None,
                    apps_port: int | None = None) -> Iterator[ThrowawayStack]:
    """Start a stack under workdir/<name> and wait until nginx answers /api/health on its port
    (on `bind`, another loopback address when a test puts a proxy on 127.0.0.1 with the same ports)."""
    port, apps_port = port or free_port(), apps_port or free_port()
    data_dir = workdir / name
    log_path = workdir / f"{name}.log"
    full_env = {**os.environ, "AIKORE_DATA_DIR": str(data_dir), "AIKORE_PORT": str(port),
                "AIKORE_APPS_PORT": str(apps_port), "AIKORE_BIND": bind,
                "AIKORE_ADMIN_PASSWORD": admin_password, "AIKORE_INSTANCE_PORT_RANGE": instance_port_range,
                "AIKORE_PUBLIC_PORT_RANGE": "", "AIKORE_HOME": str(REPO),
                "AIKORE_PYTHON": str(REPO / ".venv" / "bin" / "python"), **(env or {})}
    full_env.pop("AIKORE_TEST_DATA_DIR", None)
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
