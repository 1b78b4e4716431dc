"""Start a throwaway AiKore stack (docker/entry.sh under a temp data dir) for a benchmark, and set
up Django in the benchmark process against the same data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_stack(**env: str) -> Iterator[Path]:
    data_dir = Path(tempfile.mkdtemp(prefix="aikore-bench-"))
    os.environ.update({
        "AIKORE_DATA_DIR": str(data_dir),
        "AIKORE_PORT": str(free_port()),
        "AIKORE_APPS_PORT": str(free_port()),
        "AIKORE_INSTANCE_PORT_RANGE": "21001-21500",  # below the ephemeral range (32768+)
        "AIKORE_ADMIN_PASSWORD": "bench-password",
        "DJANGO_SETTINGS_MODULE": "aikore_site.settings",
        **env,
    })
    from aikore_site import privileges

    privileges.adopt_for_root_process()  # as root, the stack runs as two users: this process follows
    import django

    django.setup()
    from django.conf import settings

    log = open(data_dir / "stack.log", "wb")
    proc = subprocess.Popen([str(REPO / "docker" / "entry.sh")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ,
                                                         "AIKORE_PYTHON": str(REPO / ".venv" / "bin" / "python")})
    try:
        deadline = time.monotonic() + 60
        while not (Path(settings.DAPHNE_SOCKET).exists() and Path(settings.SUPERVISOR_SOCKET).exists()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((data_dir / "stack.log").read_text()[-3000:])
            time.sleep(0.1)
        time.sleep(1.5)  # let the worker and watcher settle
        yield data_dir
    finally:
        from instances.models import Instance

        for instance in Instance.objects.all():
            with contextlib.suppress(Exception):
                instance.delete_everything()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def write_blueprint(name: str, text: str) -> str:
    """A custom blueprint for a bench, written as AiKore writes files (as root: AiKore's user's, so
    the stack, which runs as that user, can read it). Returns its id."""
    from django.conf import settings

    from aikore_site.files import atomic_write

    atomic_write(Path(settings.CUSTOM_BLUEPRINTS_DIR) / f"{name}.sh", text, 0o644)
    return name


def port_answers(port: int) -> bool:
    """Something accepts connections on this loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]
