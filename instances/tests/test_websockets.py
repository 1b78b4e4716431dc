"""Websockets against the live daphne (over its unix socket): auth and origin checks, live logs
with no gap or repeat across rotation and reconnects, status pushes from the worker/watcher
processes (cross-process delivery), system samples at the configured rate."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import pytest
from django.conf import settings
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import unix_connect

from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_status

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

ORIGIN = "http://aikore.test"


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def ws(path: str, cookie: str | None, origin: str | None = ORIGIN):
    headers = {}  # Host comes from the URI
    if cookie:
        headers["Cookie"] = cookie
    if origin:
        headers["Origin"] = origin
    return unix_connect(str(settings.DAPHNE_SOCKET), uri=f"ws://aikore.test{path}", additional_headers=headers,
                        open_timeout=10, max_size=None, origin=None)


def recv(conn, timeout: float = 10.0) -> dict:
    return json.loads(conn.recv(timeout=timeout))


def recv_until(conn, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("expected message did not arrive")
        msg = recv(conn, remaining)
        if predicate(msg):
            return msg


@pytest.mark.parametrize("path", ["/ws/instances/", "/ws/system/", "/ws/instances/1/logs/"])
def test_anonymous_and_cross_origin_refused(live, alice, path):
    with pytest.raises(InvalidStatus):
        with ws(path, cookie=None) as conn:
            conn.recv(timeout=2)
    cookie = session_cookie(alice)
    for origin in ("http://evil.example", None, "null"):
        with pytest.raises(InvalidStatus):
            with ws(path, cookie=cookie, origin=origin) as conn:
                conn.recv(timeout=2)


def test_status_snapshot_and_crash_event(live, alice):
    bp = custom_blueprint("dies-later", '# aikore.ready: none\necho up\nsleep 1\nexit 7\n')
    instance = Instance.objects.create_instance(name="Dies Later", blueprint=bp)
    with ws("/ws/instances/", session_cookie(alice)) as conn:
        snapshot = recv(conn)
        assert snapshot["type"] == "snapshot"
        assert [i["name"] for i in snapshot["instances"]] == ["Dies Later"]
        instance.start()
        running = recv_until(conn, lambda m: m.get("instance", {}).get("status") == "running")
        assert running["instance"]["pid"]
        crashed = recv_until(conn, lambda m: m.get("instance", {}).get("exit_code") == 7)
        assert crashed["instance"]["status"] in ("starting", "failed")
        assert "code 7" in crashed["instance"]["error_message"]
        instance.stop()
        recv_until(conn, lambda m: m.get("instance", {}).get("status") == "stopped")
        pk = instance.pk
        instance.delete_everything()
        assert recv_until(conn, lambda m: m["type"] == "deleted")["id"] == pk


def test_log_line_from_running_instance_arrives(live, alice):
    bp = custom_blueprint("ticker", '# aikore.ready: none\nfor i in $(seq 1 100000); do echo "tick $i"; sleep 0.1; done\n')
    instance = Instance.objects.create_instance(name="Ticker", blueprint=bp)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    with ws(f"/ws/instances/{instance.pk}/logs/", session_cookie(alice)) as conn:
        text = ""
        deadline = time.monotonic() + 10
        while "tick 5\n" not in text and time.monotonic() < deadline:
            text += recv(conn)["data"]
        assert "tick 5\n" in text


def test_log_no_gap_no_repeat_across_rotation_and_reconnect(live, alice):
    bp = custom_blueprint("quiet", "# aikore.ready: none\nexec sleep 1000\n")
    instance = Instance.objects.create_instance(name="Rotated", blueprint=bp)
    log = instance.log_path
    expected = []

    def write(n0: int, n1: int) -> None:
        with open(log, "a") as fh:
            for n in range(n0, n1):
                fh.write(f"line {n}\n")
                expected.append(f"line {n}\n")

    write(0, 100)
    cookie = session_cookie(alice)
    got = ""
    with ws(f"/ws/instances/{instance.pk}/logs/?offset=0", cookie) as conn:
        first = recv(conn)
        assert first["type"] == "backfill"
        got += first["data"]
        offset = first["offset"]
        write(100, 200)
        while offset < log.stat().st_size:
            msg = recv(conn)
            got += msg["data"]
            offset = msg["offset"]
    # Disconnected: the log rotates (as supervisord does) and more lines arrive.
    write(200, 250)
    log.rename(log.with_name("output.log.1"))
    write(250, 300)
    with ws(f"/ws/instances/{instance.pk}/logs/?offset={offset}", cookie) as conn:
        while not got.endswith("line 299\n"):
            msg = recv(conn)
            assert msg["type"] in ("backfill", "append"), msg
            got += msg["data"]
        # rotation while connected
        log.with_name("output.log.1").rename(log.with_name("output.log.2"))
        log.rename(log.with_name("output.log.1"))
        write(300, 350)
        while not got.endswith("line 349\n"):
            got += recv(conn)["data"]
    assert got == "".join(expected)


def test_flood_does_not_stall_other_clients(live, alice):
    instance = Instance.objects.create_instance(name="Flood", blueprint="floodlog")
    other = Instance.objects.create_instance(name="Calm", blueprint=custom_blueprint("quiet2", "# aikore.ready: none\nexec sleep 1000\n"))
    cookie = session_cookie(alice)
    with ws(f"/ws/instances/{instance.pk}/logs/", cookie) as slow, ws("/ws/instances/", cookie) as status:
        recv(status)  # snapshot
        instance.start()
        time.sleep(1.0)  # the slow client reads nothing while the flood runs
        other.start()
        t0 = time.monotonic()
        recv_until(status, lambda m: m.get("instance", {}).get("name") == "Calm"
                   and m["instance"]["status"] == "running", timeout=15)
        assert time.monotonic() - t0 < 10
        # The slow client is still served to the end, with a marker if it fell too far behind.
        flood_end = instance.log_path.stat().st_size
        offset, kinds = 0, set()
        while offset < flood_end:
            msg = recv(slow)
            kinds.add(msg["type"])
            offset = msg["offset"]
        assert kinds <= {"backfill", "append", "dropped"}


def test_system_samples_at_configured_rate(live, alice):
    with ws("/ws/system/", session_cookie(alice)) as conn:
        history = recv(conn)
        assert history["type"] == "history"
        stamps = []
        while len(stamps) < 5:
            msg = recv(conn, timeout=5)
            if msg["type"] == "sample":
                stamps.append(msg["sample"]["ts"])
                assert "host" in msg["sample"] and "gpu" in msg["sample"]
    gaps = [b - a for a, b in pairwise(stamps)]
    interval = settings.AIKORE_SAMPLE_INTERVAL
    assert all(abs(g - interval) < interval * 0.5 for g in gaps), gaps
