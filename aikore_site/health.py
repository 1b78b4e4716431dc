"""The truth about AiKore's parts, for /api/health and the dashboard's warning banner.

Each part is checked for what it is for, not just for being up: nginx must be serving the
configuration AiKore rendered last (a dead master's orphaned workers serve an older one), the disk
must have room for logs and databases, supervisord's log writer must not be dropping instance
output. `status` is "degraded" with a reason for every part that is not right.
"""

from __future__ import annotations

import http.client
import shutil
import time
import xmlrpc.client

from django.conf import settings
from django.db import DatabaseError, connection

from instances import supervisor
from proxy import nginx

PROGRAMS = {"daphne": "web", "worker": "worker", "watcher": "watcher", "nginx": "nginx"}
# A reload is served ~115 ms after the signal (DESIGN): a mismatch must outlast this to count.
GENERATION_SETTLE_SECONDS = 1.0
MB = 1024 * 1024


def disk() -> dict:
    """Free space on the data dir's filesystem, against AIKORE_DISK_WARN_MB."""
    usage = shutil.disk_usage(settings.AIKORE_DATA_DIR)
    warn_below = settings.AIKORE_DISK_WARN_MB * MB
    return {"free_bytes": usage.free, "total_bytes": usage.total, "warn_below_bytes": warn_below,
            "low": usage.free < warn_below}


def _nginx_generation() -> tuple[dict, tuple[str, str] | None]:
    """({"expected", "serving"}, (code, reason) or None). A mismatch within a moment of the last
    config write is a reload in flight, not a problem; nothing here waits (anyone may call this)."""
    expected = nginx.expected_generation()
    try:
        serving: str | None = nginx.serving_generation()
        error = ""
    except (OSError, http.client.HTTPException) as exc:
        serving, error = None, str(exc) or exc.__class__.__name__
    info = {"expected": expected, "serving": serving}
    if expected and serving == expected:
        return info, None
    if serving is None:
        return info, ("nginx_unreachable", f"nginx does not answer on port {settings.AIKORE_PORT}: {error}")
    if _config_age() < GENERATION_SETTLE_SECONDS:
        return info, None
    return info, ("nginx_stale_config", f"nginx serves configuration {serving}, not the current {expected} "
                  "(a reload did not take effect, or a dead master's workers still hold the port)")


def _config_age() -> float:
    """Seconds since the live nginx config was written (the reload follows at once)."""
    try:
        return time.time() - nginx.config_path().stat().st_mtime
    except OSError:
        return float("inf")


def check(detail: bool = True) -> dict:
    """detail=False (an anonymous caller): booleans and problem codes only; the reasons (paths,
    database errors), the version and the configuration generations are for signed-in users."""
    problems: list[tuple[str, str]] = []  # (code, reason)
    db_ok = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        db_ok = False
        problems.append(("db", f"database: {exc}"))

    states: dict[str, str] = {}
    dropped: dict[str, int] = {}
    supervisor_ok = True
    try:
        states = {info["name"]: info["statename"] for info in supervisor.call("getAllProcessInfo", timeout=3)}
        dropped = supervisor.dropped_output(timeout=3)
    except (supervisor.SupervisorError, xmlrpc.client.Fault) as exc:
        supervisor_ok = False
        problems.append(("supervisord", f"supervisord: {exc}"))
    parts = {part: states.get(program) == "RUNNING" for program, part in PROGRAMS.items()}
    parts["web"] = True  # it is answering this request
    if supervisor_ok:
        for program, part in PROGRAMS.items():
            if part != "web" and not parts[part]:
                problems.append((f"{part}_down", f"{part} is {states.get(program, 'not loaded').lower()}"))

    generation, problem = _nginx_generation()
    if problem:
        problems.append(problem)
    parts["nginx"] = parts["nginx"] and problem is None

    space = disk()
    if space["low"]:
        problems.append(("disk_low", f"low disk space: {space['free_bytes'] // MB} MB free in the data dir "
                                     f"(warning below {settings.AIKORE_DISK_WARN_MB} MB)"))
    if dropped:
        lost = sum(dropped.values())
        problems.append(("output_lost", f"output of {len(dropped)} program(s) is being lost ({lost} bytes so far): "
                                        "the disk is full"))

    result = {
        "status": "degraded" if problems else "ok",
        "codes": [code for code, _reason in problems],
        "db": db_ok,
        "supervisord": supervisor_ok,
        **parts,
        # A rejected config leaves the last good one serving: reported, not counted as degraded.
        "nginx_config_rejected": (nginx.last_status() or {}).get("ok") is False,
        "disk": {"low": space["low"]},
    }
    if detail:
        result.update(reasons=[reason for _code, reason in problems], version=settings.VERSION,
                      nginx_generation=generation, disk=space)
    return result
