"""/ws/system/: the sampler's history on connect, then each sample as it is taken."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.live import LiveAccessMixin
from aikore_site import events

HISTORY_ON_CONNECT_SECONDS = 600.0


class SystemConsumer(LiveAccessMixin, AsyncJsonWebsocketConsumer):
    """The viewer role (LiveAccessMixin: refused without it, closed when access ends)."""

    async def connect(self) -> None:
        if not await self.admit():
            return
        from monitoring.sampler import get_sampler

        await self.channel_layer.group_add(events.SYSTEM_GROUP, self.channel_name)
        await self.accept()
        # The last 10 minutes (what the dashboard charts), not the whole ring buffer: with many
        # GPUs and instances the full history is megabytes per connect.
        await self.send_json({"type": "history", "samples": get_sampler().history(HISTORY_ON_CONNECT_SECONDS)})

    async def disconnect(self, code: int) -> None:
        await self.leave_access_groups()
        await self.channel_layer.group_discard(events.SYSTEM_GROUP, self.channel_name)

    async def system_sample(self, event: dict) -> None:
        await self.send_json({"type": "sample", "sample": event["sample"]})
