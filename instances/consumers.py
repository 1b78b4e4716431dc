"""Websockets for instances: status events of all instances, and one instance's live log.

Log streaming reads the log file by absolute offset (instances/logs.py), so a client that
reconnects with the offset it has gets exactly the bytes it lacks, across rotations. Each tick
sends at most one batch; a client that falls behind by more than MAX_BACKLOG gets a "dropped"
marker and resumes near the end, so a process printing 100k lines/s costs bounded memory.
Clients acknowledge offsets ({"type": "ack", "offset": N}); at most WINDOW bytes beyond the last
acknowledged offset are in flight. daphne buffers outgoing frames without limit when a client
reads slowly, so this window, not TCP, is what bounds a slow client's memory; a client that never
acknowledges gets WINDOW bytes past where it started, then waits (and, once it acknowledges,
jumps ahead with a "dropped" marker if the log has run far ahead meanwhile).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.live import LiveAccessMixin
from aikore_site import events
from instances import logs
from instances.models import Instance
from instances.serializers import instance_summary

POLL_SECONDS = 0.02
BATCH_BYTES = 256 * 1024
MAX_BACKLOG = 4 * 1024 * 1024
WINDOW = 2 * 1024 * 1024
BACKFILL_LINES = 500


class InstanceStatusConsumer(LiveAccessMixin, AsyncJsonWebsocketConsumer):
    """/ws/instances/: a snapshot on connect, then every status/pid/port change as it happens.
    The viewer role (LiveAccessMixin: refused without it, closed when access ends)."""

    async def connect(self) -> None:
        if not await self.admit():
            return
        await self.channel_layer.group_add(events.INSTANCES_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "instances": await self._snapshot()})

    @database_sync_to_async
    def _snapshot(self) -> list[dict]:
        return [instance_summary(i) for i in Instance.objects.select_related("parent")]

    async def disconnect(self, code: int) -> None:
        await self.leave_access_groups()
        await self.channel_layer.group_discard(events.INSTANCES_GROUP, self.channel_name)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        if isinstance(content, dict) and content.get("type") == "snapshot":
            await self.send_json({"type": "snapshot", "instances": await self._snapshot()})

    async def instance_event(self, event: dict) -> None:
        await self.send_json({"type": "instance", "instance": event["instance"]})

    async def instance_deleted(self, event: dict) -> None:
        await self.send_json({"type": "deleted", "id": event["id"]})


class InstanceLogConsumer(LiveAccessMixin, AsyncJsonWebsocketConsumer):
    """/ws/instances/<id>/logs/?offset=N (resume) or ?lines=N (backfill the last N lines). The viewer role."""

    async def connect(self) -> None:
        if not await self.admit():
            return
        pk = self.scope["url_route"]["kwargs"]["instance_id"]
        instance = await database_sync_to_async(Instance.objects.filter(pk=pk).first)()
        if instance is None:
            await self.close(code=4404)
            return
        self.log_path = instance.log_path
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        await self.accept()
        end = await asyncio.to_thread(logs.end_offset, self.log_path)
        try:
            offset = int(query["offset"][0])
            offset = max(0, min(offset, end))
        except (KeyError, ValueError, IndexError):
            try:
                lines = max(0, min(int(query.get("lines", [BACKFILL_LINES])[0]), 100_000))
            except ValueError:
                lines = BACKFILL_LINES
            offset = await asyncio.to_thread(logs.tail_offset, self.log_path, lines)
        self.offset = offset
        self.acked = offset
        self.sent_any = False
        await self._pump(kind="backfill", until=end)
        if not self.sent_any:  # always tell the client where it stands
            await self.send_json({"type": "backfill", "data": "", "offset": self.offset})
        self.task = asyncio.ensure_future(self._follow())

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "task", None)
        if task:
            task.cancel()
        await self.leave_access_groups()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: object) -> None:
        try:
            content = json.loads(text_data or "")
        except ValueError:
            return
        if isinstance(content, dict) and content.get("type") == "ack" and isinstance(content.get("offset"), int):
            # Never beyond what was sent, never backwards: a bogus ack can't open the window.
            self.acked = max(self.acked, min(content["offset"], self.offset))

    async def _pump(self, kind: str, until: int | None = None) -> None:
        """Send what lies between self.offset and the end (or `until`), in batches."""
        while True:
            if self.offset - self.acked >= WINDOW:
                return  # wait for the client to catch up
            chunk = await asyncio.to_thread(logs.read, self.log_path, self.offset, BATCH_BYTES)
            if chunk.end - chunk.offset > MAX_BACKLOG + BATCH_BYTES:
                # Too far behind: skip to near the end, at a line start, and say so.
                resume = await asyncio.to_thread(logs.tail_offset, self.log_path, 1000, BATCH_BYTES)
                await self.send_json({"type": "dropped", "bytes": resume - self.offset, "offset": resume})
                self.offset = resume
                self.acked = resume  # what was in flight before the jump no longer counts
                continue
            if chunk.skipped:
                await self.send_json({"type": "dropped", "bytes": chunk.skipped, "offset": chunk.offset})
            if not chunk.data:
                self.offset = chunk.next_offset if chunk.next_offset >= self.offset else self.offset
                return
            data = chunk.data
            cut = len(data)
            if chunk.next_offset < chunk.end or not data.endswith(b"\n"):
                # Don't split a UTF-8 sequence across messages.
                while cut > 0 and (data[cut - 1] & 0xC0) == 0x80 and cut > len(data) - 4:
                    cut -= 1
                if cut > 0 and data[cut - 1] >= 0xC0:
                    cut -= 1
                if cut == 0:
                    cut = len(data)
            self.offset = chunk.offset + cut
            self.sent_any = True
            await self.send_json({"type": kind, "data": data[:cut].decode("utf-8", errors="replace"),
                                  "offset": self.offset})
            if until is not None and self.offset >= until:
                return

    async def _follow(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_SECONDS)
                await self._pump(kind="append")
        except asyncio.CancelledError:
            pass
