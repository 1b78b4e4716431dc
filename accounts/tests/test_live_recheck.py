"""Open streams check their access again by themselves (accounts/live.py RECHECK_SECONDS): a session
that ends with no message (expired, or deleted from the store by `clearsessions` or by hand) closes
its streams at the next check. In process, through the real ASGI stack (origin check, session auth,
routing) with Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
from importlib import import_module

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings

from accounts import live
from monitoring.tests.test_system_ws import communicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def delete_session(cookie: bytes) -> None:
    key = cookie.decode().split("=", 1)[1]
    import_module(settings.SESSION_ENGINE).SessionStore(key).delete()


async def drained(comm) -> list[dict]:
    messages = []
    while not await comm.receive_nothing(timeout=0.05):
        messages.append(await comm.receive_output())
    return messages


def test_a_session_deleted_without_a_message_closes_its_stream_at_the_next_check(alice, monkeypatch):
    monkeypatch.setattr(live, "RECHECK_SECONDS", 0.2)
    kept, dropped = session_cookie(alice), session_cookie(alice)

    async def main() -> tuple[int, bool]:
        stays, goes = communicator("/ws/system/", kept), communicator("/ws/system/", dropped)
        assert (await stays.connect(timeout=10))[0] and (await goes.connect(timeout=10))[0]
        await database_sync_to_async(delete_session)(dropped)
        code = None
        while code is None:
            message = await goes.receive_output(timeout=5)
            if message["type"] == "websocket.close":
                code = message["code"]
        await asyncio.sleep(1)  # five more checks: the live session's stream is still open
        still_open = all(message["type"] != "websocket.close" for message in await drained(stays))
        await stays.disconnect()
        await goes.disconnect()
        return code, still_open

    code, still_open = async_to_sync(main)()
    assert code == live.CLOSE_REVOKED
    assert still_open
