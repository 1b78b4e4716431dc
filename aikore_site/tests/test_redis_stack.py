"""The AIKORE_REDIS_URL path end to end: a real redis-server on a free loopback port and a throwaway
stack pointed at it (RedisHuey for jobs, channels-redis for websocket events). As a user would,
through nginx: log in, create a demo-webui instance over the REST API, watch /ws/instances/ while
starting, crashing and stopping it (the status events come from the worker and watcher processes,
so they cross processes through Redis), read /ws/system/ samples and a log line from the instance's log
socket. Skipped only when Debian's redis-server is not installed (scripts/system-deps.sh test)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from aikore_site.testing import free_port
from aikore_site.tests.stacks import ADMIN_USER, ThrowawayStack, kill_group, throwaway_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                                else None)


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/system-deps.sh test installs Debian's redis-server)")
    import redis

    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    log = open(tmp_path / "redis.log", "wb")
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(redis_dir)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not come up:\n" + (tmp_path / "redis.log").read_text())
            time.sleep(0.05)
        client.close()
        yield url
    finally:
        kill_group(proc, timeout=10)
        log.close()


@pytest.fixture
def redis_stack(tmp_path, redis_url) -> Iterator[ThrowawayStack]:
    with throwaway_stack(tmp_path, "redis-stack", {"AIKORE_REDIS_URL": redis_url},
                         admin_password="redis-admin-password") as stack:
        yield stack


def login(stack: ThrowawayStack) -> httpx.Client:
    client = httpx.Client(base_url=stack.base_url, timeout=20)
    page = client.get("/login/")
    assert page.status_code == 200
    token = client.cookies[settings.CSRF_COOKIE_NAME]
    response = client.post("/login/", data={"csrfmiddlewaretoken": token, "username": ADMIN_USER,
                                            "password": stack.admin_password},
                           headers={"Referer": stack.base_url + "/login/"})
    assert response.status_code == 302, response.text[-500:]
    assert settings.SESSION_COOKIE_NAME in client.cookies
    return client


def api(client: httpx.Client, stack: ThrowawayStack, method: str, path: str, body: object = None) -> httpx.Response:
    headers = {"X-CSRFToken": client.cookies[settings.CSRF_COOKIE_NAME], "Referer": stack.base_url + "/"}
    return client.request(method, "/api" + path, json=body, headers=headers)


def ws(stack: ThrowawayStack, client: httpx.Client, path: str):
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return connect(f"ws://127.0.0.1:{stack.port}{path}", origin=stack.base_url,
                   additional_headers={"Cookie": cookie}, open_timeout=10, max_size=None)


def recv_until(conn, predicate, timeout: float, seen: list[dict] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"expected message did not arrive; got {seen if seen is not None else '?'}")
        try:
            msg = json.loads(conn.recv(timeout=remaining))
        except TimeoutError:
            continue
        if seen is not None:
            seen.append(msg)
        if predicate(msg):
            return msg


def statuses(messages: list[dict], pk: int) -> list[str]:
    """Successive distinct statuses of instance pk in the pushed events."""
    out: list[str] = []
    for msg in messages:
        if msg.get("type") == "instance" and msg["instance"]["id"] == pk:
            status = msg["instance"]["status"]
            if not out or out[-1] != status:
                out.append(status)
    return out


def test_events_jobs_samples_and_logs_cross_processes_through_redis(redis_url, redis_stack) -> None:
    import redis

    stack = redis_stack
    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    client = login(stack)
    try:
        created = api(client, stack, "POST", "/instances", {"name": "Over Redis", "blueprint": "demo-webui"})
        assert created.status_code == 201, created.text
        pk = created.json()["id"]

        with ws(stack, client, "/ws/instances/") as status_ws:
            snapshot = json.loads(status_ws.recv(timeout=10))
            assert snapshot["type"] == "snapshot"
            assert [(i["id"], i["status"]) for i in snapshot["instances"]] == [(pk, "stopped")]
            # The consumer joined its group in Redis (channels-redis), not in a process's memory.
            assert r.zcard("asgi:group:instances") >= 1

            started = api(client, stack, "POST", f"/instances/{pk}/start")
            assert started.status_code in (200, 202), started.text
            seen: list[dict] = []
            running = recv_until(status_ws, lambda m: m.get("type") == "instance" and m["instance"]["id"] == pk
                                 and m["instance"]["status"] in ("running", "failed"), timeout=30, seen=seen)
            assert statuses(seen, pk)[-2:] == ["starting", "running"], (seen, stack.log()[-3000:])
            assert running["instance"]["pid"]

            # The start job went through RedisHuey: enqueued by daphne (LPUSH on huey's queue),
            # dequeued by the worker (BRPOP); no SQLite queue was ever created.
            commands = r.info("commandstats")
            assert commands.get("cmdstat_lpush", {}).get("calls", 0) >= 1, commands
            assert commands.get("cmdstat_brpop", {}).get("calls", 0) >= 1, commands
            assert any(c.get("cmd") == "brpop" for c in r.client_list()), r.client_list()
            assert not (stack.data_dir / "huey.db").exists()
            assert api(client, stack, "GET", f"/instances/{pk}").json()["status"] == "running"

            with ws(stack, client, "/ws/system/") as system_ws:
                history = json.loads(system_ws.recv(timeout=10))
                assert history["type"] == "history"
                sample = recv_until(system_ws, lambda m: m.get("type") == "sample", timeout=15)
                assert sample["sample"]

            with ws(stack, client, f"/ws/instances/{pk}/logs/") as log_ws:
                text = ""
                deadline = time.monotonic() + 15
                while not re.search(r"demo WebUI for instance 'Over Redis'", text):
                    assert time.monotonic() < deadline, f"no log line; got {text!r}"
                    msg = json.loads(log_ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                    if msg["type"] in ("backfill", "append"):
                        text += msg["data"]

            # A crash: the watcher (supervisord's event listener, a third process) publishes the
            # restart-with-backoff status and enqueues the crash restart, which the worker runs.
            os.kill(running["instance"]["pid"], signal.SIGKILL)
            seen = []
            crashed = recv_until(status_ws, lambda m: m.get("type") == "instance" and m["instance"]["id"] == pk
                                 and m["instance"]["restart_count"] == 1, timeout=15, seen=seen)
            assert crashed["instance"]["status"] == "starting", crashed
            assert "restarting in" in crashed["instance"]["error_message"], crashed
            again = recv_until(status_ws, lambda m: m.get("type") == "instance" and m["instance"]["id"] == pk
                               and m["instance"]["status"] == "running" and m["instance"]["pid"], timeout=20,
                               seen=seen)
            assert again["instance"]["pid"] != running["instance"]["pid"]

            stopped = api(client, stack, "POST", f"/instances/{pk}/stop")
            assert stopped.status_code in (200, 202), stopped.text
            seen = []
            recv_until(status_ws, lambda m: m.get("type") == "instance" and m["instance"]["id"] == pk
                       and m["instance"]["status"] == "stopped", timeout=20, seen=seen)
            assert statuses(seen, pk)[-1] == "stopped"
            assert seen[-1]["instance"]["pid"] is None

        deleted = api(client, stack, "DELETE", f"/instances/{pk}")
        assert deleted.status_code in (200, 204), deleted.text

        # Logging out closes the session's streams at once, through Redis too (accounts/live.py).
        with ws(stack, client, "/ws/system/") as system_ws:
            assert json.loads(system_ws.recv(timeout=10))["type"] == "history"
            logout = client.post("/logout/", headers={"X-CSRFToken": client.cookies[settings.CSRF_COOKIE_NAME],
                                                      "Referer": stack.base_url + "/"})
            assert logout.status_code == 302
            with pytest.raises(ConnectionClosed) as closed:
                recv_until(system_ws, lambda m: False, timeout=5)
            assert closed.value.rcvd.code == 4401
    finally:
        client.close()
        r.close()
