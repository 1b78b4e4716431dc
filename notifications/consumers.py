"""/ws/notifications/: every new notification event (and each change of its deliveries' status)
as it happens, so an open dashboard's history and settings stay current without polling."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifications.service import GROUP


def _authenticated(scope: dict) -> bool:
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated and user.is_active)


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not _authenticated(self.scope):
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: object, **kwargs: object) -> None:
        pass  # nothing to ask: the history comes from GET /api/notifications/events

    async def notification_event(self, event: dict) -> None:
        await self.send_json({"type": "event", "event": event["event"]})
