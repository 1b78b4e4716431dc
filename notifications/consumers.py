"""/ws/notifications/: every new notification event (and each change of its deliveries' status)
as it happens, so an open dashboard's history and settings stay current without polling."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts import roles
from accounts.live import LiveAccessMixin, still_allowed
from notifications.service import GROUP, without_target_details


class NotificationConsumer(LiveAccessMixin, AsyncJsonWebsocketConsumer):
    """Any role may follow the history; logout and revocation close it (LiveAccessMixin). The
    deliveries' target names and errors go to the admin role only, as in the API."""

    admin = False

    async def connect(self) -> None:
        if not await self.admit():
            return
        self.admin = await database_sync_to_async(roles.can)(self.scope["user"], roles.ADMIN)
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def access_changed(self, event: dict) -> None:
        await super().access_changed(event)
        # A narrower role (or token role) from now on; a wider one takes a reconnect.
        self.admin = self.admin and await database_sync_to_async(still_allowed)(self.scope, roles.ADMIN)

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)
        await self.leave_access_groups()

    async def receive_json(self, content: object, **kwargs: object) -> None:
        pass  # nothing to ask: the history comes from GET /api/notifications/events

    async def notification_event(self, event: dict) -> None:
        data = event["event"] if self.admin else without_target_details(event["event"])
        await self.send_json({"type": "event", "event": data})
