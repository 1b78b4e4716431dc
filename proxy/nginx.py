"""The one module that talks to nginx: test a candidate config, install it, signal the master.

nginx runs under supervisord as AiKore's own user (daemon off, master_process on) with its prefix,
pid file, logs and temp dirs in $AIKORE_DATA_DIR/nginx, so nothing here needs root. A reload is
`nginx -t` on the candidate, an atomic rename over nginx.conf and SIGHUP to the master: the master
starts new workers and lets the old ones finish their open connections (websockets included), so
a reload never cuts another instance's stream.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from django.conf import settings

from aikore_site.files import atomic_write, ensure_dir, file_lock
from proxy.render import config_generation, local_address, render_nginx_config

log = logging.getLogger(__name__)

TEST_TIMEOUT = 30  # s; `nginx -t` takes ~10 ms with 50 instances


@dataclass
class ReloadResult:
    ok: bool
    changed: bool  # False: the rendered config equals the live one (nothing to do)
    reloaded: bool  # the master was signalled
    error: str = ""
    duration_ms: float = 0.0
    at: float = field(default_factory=time.time)


def nginx_dir() -> Path:
    return Path(settings.NGINX_DIR)


def config_path() -> Path:
    return nginx_dir() / "nginx.conf"


def candidate_path() -> Path:
    return nginx_dir() / "nginx.conf.new"


def rejected_path() -> Path:
    return nginx_dir() / "nginx.conf.rejected"


def status_path() -> Path:
    return nginx_dir() / "status.json"


def pid_path() -> Path:
    return nginx_dir() / "nginx.pid"


def command(*args: str, config: Path | None = None) -> list[str]:
    """nginx with AiKore's prefix and error log (-e: so it never touches /var/log/nginx)."""
    return [
        settings.AIKORE_NGINX, "-p", f"{nginx_dir()}/", "-e", str(nginx_dir() / "error.log"),
        "-c", str(config or config_path()), *args,
    ]


def prepare_dirs() -> None:
    # AiKore's user's, nginx/ itself too: nginx -t runs as that user and writes its log and pid there.
    for path in (nginx_dir(), nginx_dir() / "tmp", nginx_dir() / "cache"):
        ensure_dir(path, None, settings.AIKORE_FILE_OWNER)


@contextlib.contextmanager
def regeneration_lock() -> Iterator[None]:
    """One regeneration at a time, across the worker's threads and any other process."""
    with file_lock(nginx_dir() / "regenerate.lock"):
        yield


def test_config(path: Path) -> tuple[bool, str]:
    """`nginx -t` on a config file: (ok, nginx's own words). Run as AiKore's user when this process
    is root and AiKore is not (the start-up steps, the tests): nginx -t creates the cache and temporary
    folders the config names, which the running nginx (AiKore's user) must own."""
    owner = settings.AIKORE_FILE_OWNER
    as_owner = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    try:
        result = subprocess.run(command("-t", "-q", config=path), capture_output=True, text=True,
                                timeout=TEST_TIMEOUT, check=False, **as_owner)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not run {settings.AIKORE_NGINX}: {exc}"
    return result.returncode == 0, (result.stderr + result.stdout).strip()


def master_pid() -> int | None:
    """The running master's pid, or None (nginx not started yet, or a stale pid file)."""
    try:
        pid = int(pid_path().read_text().strip())
        proc = psutil.Process(pid)
        # A stale pid file may name a recycled pid: only signal an nginx master.
        if "nginx" not in proc.name() and not any("nginx" in part for part in proc.cmdline()[:1]):
            return None
        return pid
    except (OSError, ValueError, psutil.Error):
        return None


def signal_reload() -> bool:
    pid = master_pid()
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    return True


def write_status(result: ReloadResult) -> None:
    atomic_write(status_path(), json.dumps(asdict(result)))


def last_status() -> dict | None:
    """The outcome of the last regeneration (for the health endpoint and the admin)."""
    try:
        return json.loads(status_path().read_text())
    except (OSError, ValueError):
        return None


def install(text: str, reload: bool = True) -> ReloadResult:
    """Test `text` as the new nginx.conf; when it passes, make it live and (if nginx runs) reload.
    When it fails, the live config stays as it was and the rejected file is kept for a look."""
    started = time.perf_counter()
    prepare_dirs()
    live = config_path()
    current = live.read_text() if live.exists() else None
    if current == text:
        result = ReloadResult(ok=True, changed=False, reloaded=False,
                              duration_ms=(time.perf_counter() - started) * 1000)
        if (last_status() or {}).get("ok") is not True:
            write_status(result)  # what is live is what the database asks for again
        return result
    candidate = candidate_path()
    atomic_write(candidate, text)
    ok, output = test_config(candidate)
    if not ok:
        os.replace(candidate, rejected_path())
        result = ReloadResult(ok=False, changed=True, reloaded=False,
                              error=f"nginx -t rejected the new config; the previous one stays live.\n{output}",
                              duration_ms=(time.perf_counter() - started) * 1000)
        log.error("%s", result.error)
        write_status(result)
        return result
    os.replace(candidate, live)
    reloaded = signal_reload() if reload else False
    result = ReloadResult(ok=True, changed=True, reloaded=reloaded,
                          duration_ms=(time.perf_counter() - started) * 1000)
    write_status(result)
    return result


def regenerate(source: str | None = None, reload: bool = True) -> ReloadResult:
    """Render the config from the database and install it (serialised)."""
    with regeneration_lock():
        return install(render_nginx_config(source), reload=reload)


def expected_generation() -> str | None:
    """The generation of the live config file (what nginx should be serving)."""
    try:
        return config_generation(config_path().read_text())
    except OSError:
        return None


def serving_generation(timeout: float = 1.0) -> str:
    """The generation nginx answers on AIKORE_PORT right now. Raises OSError (or
    http.client.HTTPException) when nothing answers as AiKore's nginx would."""
    conn = http.client.HTTPConnection(local_address(settings.AIKORE_BIND), settings.AIKORE_PORT, timeout=timeout)
    try:
        conn.request("GET", "/_aikore/generation", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read(100).decode("ascii", "replace").strip()
    finally:
        conn.close()
    if response.status != 200:
        raise http.client.HTTPException(f"HTTP {response.status}")
    return body
