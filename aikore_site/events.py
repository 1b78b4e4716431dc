"""Pushing events to websocket clients from any AiKore process.

With AIKORE_REDIS_URL, channels-redis carries group_send across processes: each process that
publishes keeps one event loop thread (and so one pooled Redis connection) for it, instead of a
fresh loop and connection per event, and waits a bounded time for each send, so events from one
thread stay in order and a slow or absent Redis costs a lifecycle job at most PUBLISH_TIMEOUT.
Without it (the embedded default) the web process (daphne) runs an in-memory channel layer, and the
worker and the supervisord event listener reach it through a unix datagram socket: ``publish()``
sends one JSON datagram, the web process's bridge turns it into a local ``group_send``. Either way
an event that can't be delivered is dropped, not queued: clients get a full snapshot when they
reconnect anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from instances.models import Instance

log = logging.getLogger(__name__)

INSTANCES_GROUP = "instances"
SYSTEM_GROUP = "system"
MAX_DATAGRAM = 60_000

PUBLISH_TIMEOUT = 2.0
DROP_WARNING_INTERVAL = 60.0

_bridge_loop: asyncio.AbstractEventLoop | None = None
_sender: socket.socket | None = None
_sender_lock = threading.Lock()
_publisher_loop: asyncio.AbstractEventLoop | None = None
_publisher_pid: int | None = None
_publisher_lock = threading.Lock()
_last_drop_warning = 0.0


def _layer() -> Any:
    from channels.layers import get_channel_layer

    return get_channel_layer()


def publish(group: str, message: dict) -> None:
    """group_send from any thread of any AiKore process; never raises, never blocks for long."""
    try:
        if settings.AIKORE_REDIS_URL:
            _send_redis(group, message)
        elif _bridge_loop is not None:
            _deliver_local(group, message)
        else:
            _send_datagram(group, message)
    except Exception as exc:  # a lost event must not break a lifecycle job
        _dropped(group, exc)


def _dropped(group: str, exc: BaseException) -> None:
    """Say that events are being lost (once a minute, not once per event)."""
    global _last_drop_warning
    now = time.monotonic()
    if now - _last_drop_warning >= DROP_WARNING_INTERVAL:
        _last_drop_warning = now
        log.warning("event to %s dropped: %r", group, exc)
    else:
        log.debug("event to %s dropped: %r", group, exc)


def publish_instance(instance: Instance) -> None:
    publish(INSTANCES_GROUP, {"type": "instance.event", "instance": instance.as_event()})


def _deliver_local(group: str, message: dict) -> None:
    loop = _bridge_loop
    assert loop is not None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        loop.create_task(_layer().group_send(group, message))
    else:
        asyncio.run_coroutine_threadsafe(_layer().group_send(group, message), loop)


def _publisher() -> asyncio.AbstractEventLoop:
    """This process's event loop for channels-redis sends, started on first use (and again in a
    forked child, which inherits the loop object but not its thread)."""
    global _publisher_loop, _publisher_pid
    with _publisher_lock:
        if _publisher_loop is None or _publisher_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="aikore-events", daemon=True).start()
            _publisher_loop, _publisher_pid = loop, os.getpid()
        return _publisher_loop


def _send_redis(group: str, message: dict) -> None:
    future = asyncio.run_coroutine_threadsafe(_layer().group_send(group, message), _publisher())
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called from an event loop (daphne's own): never block it; report a failure later.
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is None or _dropped(group, f.exception()))
        return
    try:
        future.result(PUBLISH_TIMEOUT)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"Redis did not take the event within {PUBLISH_TIMEOUT:g} s") from None


def _send_datagram(group: str, message: dict) -> None:
    global _sender
    payload = json.dumps({"group": group, "message": message}, default=str).encode()
    if len(payload) > MAX_DATAGRAM:
        log.warning("event to %s too large (%d bytes), dropped", group, len(payload))
        return
    with _sender_lock:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        try:
            _sender.sendto(payload, str(settings.EVENTS_SOCKET))
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError):
            pass  # web process not up (or swamped): drop, clients resync on reconnect


class _BridgeProtocol(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            event = json.loads(data)
            group, message = event["group"], event["message"]
            if not isinstance(group, str) or not isinstance(message, dict) or "type" not in message:
                raise ValueError("malformed event")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad event datagram ignored: %s", exc)
            return
        asyncio.get_running_loop().create_task(_layer().group_send(group, message))


async def start_bridge() -> None:
    """Called once in the web process's event loop: receive other processes' events."""
    global _bridge_loop
    if _bridge_loop is not None or settings.AIKORE_REDIS_URL:
        return
    loop = asyncio.get_running_loop()
    _bridge_loop = loop
    path = str(settings.EVENTS_SOCKET)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o600)  # only AiKore's own user may inject events
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setblocking(False)
    await loop.create_datagram_endpoint(_BridgeProtocol, sock=sock)
