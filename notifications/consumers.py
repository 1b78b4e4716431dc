"""/ws/notifications/: every new notification event (and each change of its deliveries' status)
as it happens, so an open dashboard's history and settings stay current without polling."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.live import LiveAccessMixin
from notifications.service import GROUP


class NotificationConsumer(LiveAccessMixin, AsyncJsonWebsocketConsumer):
    """Any role may follow the history; logout and revocation close it (LiveAccessMixin)."""

    async def connect(self) -> None:
        if not await self.admit():
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        await self.leave_access_groups()

    async def receive_json(self, content: object, **kwargs: object) -> None:
        pass  # nothing to ask: the history comes from GET /api/notifications/events

    async def notification_event(self, event: dict) -> None:
        await self.send_json({"type": "event", "event": event["event"]})
