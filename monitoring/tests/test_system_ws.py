"""/ws/system/ in process, through the real ASGI stack (origin check, session auth, routing) with
Channels' WebsocketCommunicator: refusals, the ring buffer on connect, then samples as taken."""

from __future__ import annotations

import asyncio
import statistics

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.test import Client

from aikore_site.routing import build_application
from monitoring import service
from monitoring.sampler import get_sampler

pytestmark = pytest.mark.django_db(transaction=True)

application = build_application(get_asgi_application())


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


def communicator(path: str, cookie: bytes | None, origin: bytes | None = b"http://aikore.test") -> WebsocketCommunicator:
    headers = [(b"host", b"aikore.test")]
    if cookie:
        headers.append((b"cookie", cookie))
    if origin:
        headers.append((b"origin", origin))
    return WebsocketCommunicator(application, path, headers=headers)


async def refused(comm: WebsocketCommunicator) -> bool:
    connected, _ = await comm.connect(timeout=10)
    await comm.disconnect()
    return not connected


def test_anonymous_and_cross_origin_refused(alice):
    cookie = session_cookie(alice)

    async def main() -> list[bool]:
        return [
            await refused(communicator("/ws/system/", None)),
            await refused(communicator("/ws/system/", cookie, origin=b"http://evil.example")),
            await refused(communicator("/ws/system/", cookie, origin=None)),
            await refused(communicator("/ws/system/", cookie, origin=b"null")),
        ]

    assert async_to_sync(main)() == [True, True, True, True]


def test_history_on_connect_then_samples_at_the_configured_rate(alice):
    cookie = session_cookie(alice)
    sampler = get_sampler()
    sampler.sample()

    async def main() -> tuple[dict, list[dict]]:
        comm = communicator("/ws/system/", cookie)
        connected, _ = await comm.connect(timeout=10)
        assert connected
        history = await comm.receive_json_from(timeout=10)
        # The web process's one sampler, pushing to every client's group.
        task = asyncio.ensure_future(sampler.run(service._push))
        samples = []
        try:
            while len(samples) < 5:
                msg = await comm.receive_json_from(timeout=10)
                assert msg["type"] == "sample"
                samples.append(msg["sample"])
        finally:
            task.cancel()
            await comm.disconnect()
        return history, samples

    history, samples = async_to_sync(main)()
    assert history["type"] == "history"
    assert history["samples"] and history["samples"][-1]["seq"] >= 1
    seqs = [s["seq"] for s in samples]
    assert seqs == list(range(seqs[0], seqs[0] + 5))  # in order, none skipped
    assert seqs[0] > history["samples"][-1]["seq"]
    gaps = [b["ts"] - a["ts"] for a, b in zip(samples, samples[1:], strict=False)]
    interval = settings.AIKORE_SAMPLE_INTERVAL
    assert interval * 0.5 < statistics.median(gaps) < interval * 1.5, gaps
    assert {"host", "gpu", "instances"} <= set(samples[0])
