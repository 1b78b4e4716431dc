"""Websockets, in process (Channels' WebsocketCommunicator through the real ASGI stack: origin
check, session auth, routing) and against the live daphne (over its unix socket): auth and origin
checks, backfill and resume by offset, bounded memory for a client that doesn't keep up, live logs
with no gap or repeat across rotation and reconnects, status pushes from the worker/watcher
processes (cross-process delivery), system samples at the configured rate."""

from __future__ import annotations

import json
import statistics
import time
from itertools import pairwise

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import unix_connect

from aikore_site.routing import build_application
from instances import consumers
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_status

pytestmark = pytest.mark.django_db(transaction=True)

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


@pytest.mark.stack
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


@pytest.mark.stack
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


@pytest.mark.stack
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


@pytest.mark.stack
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


@pytest.mark.stack
def test_flood_does_not_stall_other_clients(live, alice):
    instance = Instance.objects.create_instance(name="Flood", blueprint="floodlog")
    other = Instance.objects.create_instance(name="Calm", blueprint=custom_blueprint("quiet2", "# aikore.ready: none\nexec sleep 1000\n"))
    cookie = session_cookie(alice)
    with ws(f"/ws/instances/{instance.pk}/logs/", cookie) as slow, ws("/ws/instances/", cookie) as status:
        recv(status)  # snapshot
        instance.start()
        time.sleep(1.0)  # the slow client reads nothing while the flood runs
        other.start()
        recv_until(status, lambda m: m.get("instance", {}).get("name") == "Calm"
                   and m["instance"]["status"] == "running", timeout=15)
        # The slow client is still served to the end, in order, with a marker if it fell too far behind.
        flood_end = instance.log_path.stat().st_size
        offset, kinds, runs = 0, set(), [""]
        while offset < flood_end:
            msg = recv(slow)
            kinds.add(msg["type"])
            offset = msg["offset"]
            if msg["type"] == "dropped":
                runs.append("")
            else:
                runs[-1] += msg["data"]
                slow.send(json.dumps({"type": "ack", "offset": offset}))
        assert kinds <= {"backfill", "append", "dropped"}
        for run in filter(None, runs):
            numbers = [int(n) for n in run.split()]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


@pytest.mark.stack
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
    # The sampler's own timestamps (not arrival times); the median tolerates one late tick on a busy machine.
    assert interval * 0.5 < statistics.median(gaps) < interval * 1.5, gaps


# --- in process: WebsocketCommunicator through the real ASGI application --------------------------

application = build_application(get_asgi_application())


def communicator(path: str, cookie: str | None, origin: str | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"aikore.test")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def quiet_instance(name: str) -> Instance:
    return Instance.objects.create_instance(name=name, blueprint=custom_blueprint("quiet-ws", "# aikore.ready: none\nexec sleep 1000\n"))


async def drain(comm: WebsocketCommunicator, quiet: float = 0.5) -> list[dict]:
    """Everything the consumer sends until it has been silent for `quiet` seconds."""
    messages = []
    # receive_nothing() waits without cancelling the application (a receive timeout would).
    while not await comm.receive_nothing(timeout=quiet, interval=0.02):
        messages.append(await comm.receive_json_from(timeout=10))
    return messages


@pytest.mark.parametrize("path", ["/ws/instances/", "/ws/system/", "/ws/instances/{pk}/logs/"])
def test_in_process_anonymous_and_cross_origin_refused(alice, path):
    path = path.format(pk=quiet_instance("Refused").pk)
    cookie = session_cookie(alice)

    async def connects(cookie: str | None, origin: str | None) -> bool:
        comm = communicator(path, cookie, origin)
        connected, _ = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected

    async def main() -> list[bool]:
        return [await connects(None, ORIGIN), await connects(cookie, "http://evil.example"),
                await connects(cookie, "http://aikore.test.evil.example"), await connects(cookie, None),
                await connects(cookie, "null"), await connects(cookie, ORIGIN)]

    assert async_to_sync(main)() == [False, False, False, False, False, True]


def test_log_backfill_of_the_last_lines_then_resume_by_offset(alice):
    instance = quiet_instance("Backfill")
    instance.log_path.write_text("".join(f"line {n}\n" for n in range(1000)))
    cookie = session_cookie(alice)

    async def main() -> tuple[dict, list[dict], list[dict]]:
        comm = communicator(f"/ws/instances/{instance.pk}/logs/?lines=3", cookie)
        assert (await comm.connect(timeout=10))[0]
        backfill = await comm.receive_json_from(timeout=10)
        with open(instance.log_path, "a") as fh:
            fh.write("line 1000\nline 1001\n")
        appended = [await comm.receive_json_from(timeout=10)]
        while appended[-1]["offset"] < instance.log_path.stat().st_size:
            appended.append(await comm.receive_json_from(timeout=10))
        await comm.disconnect()
        # Gone for a while; comes back with the offset it has.
        with open(instance.log_path, "a") as fh:
            fh.write("line 1002\n")
        comm = communicator(f"/ws/instances/{instance.pk}/logs/?offset={appended[-1]['offset']}", cookie)
        assert (await comm.connect(timeout=10))[0]
        resumed = await drain(comm)
        await comm.disconnect()
        return backfill, appended, resumed

    backfill, appended, resumed = async_to_sync(main)()
    assert backfill == {"type": "backfill", "data": "line 997\nline 998\nline 999\n",
                        "offset": len("".join(f"line {n}\n" for n in range(1000)))}
    assert {m["type"] for m in appended} == {"append"}
    assert "".join(m["data"] for m in appended) == "line 1000\nline 1001\n"
    assert resumed == [{"type": "backfill", "data": "line 1002\n", "offset": instance.log_path.stat().st_size}]


def test_log_client_that_does_not_keep_up_gets_bounded_data_then_a_drop_marker(alice):
    """A process prints far more than the client reads: the consumer keeps at most WINDOW bytes
    unacknowledged in flight (daphne's send buffer stays bounded), and when the client acknowledges,
    skips ahead to a line start with a "dropped" marker, then continues with no gap."""
    instance = quiet_instance("Flooded")

    def lines(n0: int, n1: int) -> str:
        return "".join(f"{n:010d}\n" for n in range(n0, n1))  # 11 bytes a line

    first, total = 270_000, 820_000  # ~3 MB at connect (< MAX_BACKLOG), ~9 MB in the end
    instance.log_path.write_text(lines(0, first))
    cookie = session_cookie(alice)

    async def main() -> tuple[list[dict], list[dict], list[dict]]:
        comm = communicator(f"/ws/instances/{instance.pk}/logs/?offset=0", cookie)
        assert (await comm.connect(timeout=10))[0]
        unacked = await drain(comm)  # reads, but doesn't acknowledge
        with open(instance.log_path, "a") as fh:
            fh.write(lines(first, total))
        while_unacked = await drain(comm)
        await comm.send_json_to({"type": "ack", "offset": unacked[-1]["offset"]})
        after: list[dict] = []
        while not after or after[-1]["offset"] < instance.log_path.stat().st_size:
            msg = await comm.receive_json_from(timeout=10)
            after.append(msg)
            if msg["type"] != "dropped":
                await comm.send_json_to({"type": "ack", "offset": msg["offset"]})
        await comm.disconnect()
        return unacked, while_unacked, after

    unacked, while_unacked, after = async_to_sync(main)()
    sent = sum(len(m["data"]) for m in unacked)
    assert consumers.WINDOW <= sent < consumers.WINDOW + consumers.BATCH_BYTES
    assert "".join(m["data"] for m in unacked) == lines(0, first)[:sent]  # batches may end mid-line
    assert while_unacked == []  # 6 MB more written: nothing piles up for a client that doesn't ack
    marker = after[0]
    assert marker["type"] == "dropped" and marker["bytes"] > 0
    assert marker["offset"] == sent + marker["bytes"] and marker["offset"] % 11 == 0
    assert "".join(m["data"] for m in after[1:]) == lines(marker["offset"] // 11, total)


def test_an_ack_beyond_what_was_sent_cannot_open_the_window(alice):
    instance = quiet_instance("Bogus Ack")
    line = "x" * 99 + "\n"
    instance.log_path.write_text(line * 30_000)  # 3 MB: within MAX_BACKLOG, beyond WINDOW
    cookie = session_cookie(alice)

    async def main() -> tuple[list[dict], list[dict]]:
        comm = communicator(f"/ws/instances/{instance.pk}/logs/?offset=0", cookie)
        assert (await comm.connect(timeout=10))[0]
        first = await drain(comm)
        await comm.send_json_to({"type": "ack", "offset": 10**12})  # counts as "all that was sent"
        with open(instance.log_path, "a") as fh:
            fh.write(line * 30_000)
        rest = await drain(comm)
        await comm.disconnect()
        return first, rest

    first, rest = async_to_sync(main)()
    acked = first[-1]["offset"]
    assert consumers.WINDOW <= acked < consumers.WINDOW + consumers.BATCH_BYTES
    reached = rest[-1]["offset"]
    assert consumers.WINDOW <= reached - acked < consumers.WINDOW + consumers.BATCH_BYTES
    assert reached < instance.log_path.stat().st_size


def test_status_socket_snapshot_and_pushed_events(alice):
    instance = quiet_instance("Pushed")
    cookie = session_cookie(alice)

    async def main() -> tuple[dict, dict, dict]:
        comm = communicator("/ws/instances/", cookie)
        assert (await comm.connect(timeout=10))[0]
        snapshot = await comm.receive_json_from(timeout=10)
        from channels.layers import get_channel_layer

        from aikore_site import events

        await get_channel_layer().group_send(events.INSTANCES_GROUP, {
            "type": "instance.event", "instance": {**instance.as_event(), "status": "running", "pid": 4321}})
        event = await comm.receive_json_from(timeout=10)
        await get_channel_layer().group_send(events.INSTANCES_GROUP, {"type": "instance.deleted", "id": instance.pk})
        deleted = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return snapshot, event, deleted

    snapshot, event, deleted = async_to_sync(main)()
    assert snapshot["type"] == "snapshot" and [i["name"] for i in snapshot["instances"]] == ["Pushed"]
    assert event == {"type": "instance", "instance": {**instance.as_event(), "status": "running", "pid": 4321}}
    assert deleted == {"type": "deleted", "id": instance.pk}
