"""Websocket routes of all apps, behind session (or Bearer token) auth and a same-origin check.
A path no route matches is refused (403 at the handshake), not an error."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from aikore_site.origin import SameOriginValidator, bearer_from_scope


class UnknownRoute(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()  # before accept: daphne answers the handshake with 403


class TokenAuthMiddleware:
    """Scripts (no browser, so no cookies and no Origin) authenticate websockets with
    Authorization: Bearer <token>, as they do the API; the token's role applies (accounts/roles.py)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        raw = bearer_from_scope(scope)
        if raw:
            from django.contrib.auth.models import AnonymousUser

            from accounts.auth import user_from_token

            user = await database_sync_to_async(user_from_token)(raw)
            scope = {**scope, "user": user or AnonymousUser()}
        return await self.application(scope, receive, send)


def websocket_urlpatterns() -> list:
    patterns: list = []
    try:
        from instances.routing import websocket_urlpatterns as instance_ws

        patterns += instance_ws
    except ImportError:
        pass
    try:
        from monitoring.routing import websocket_urlpatterns as monitoring_ws

        patterns += monitoring_ws
    except ImportError:
        pass
    try:
        from notifications.routing import websocket_urlpatterns as notifications_ws

        patterns += notifications_ws
    except ImportError:
        pass
    try:
        from terminals.routing import websocket_urlpatterns as terminal_ws

        patterns += terminal_ws
    except ImportError:
        pass
    return [*patterns, re_path(r"", UnknownRoute.as_asgi())]


def build_application(django_asgi_app):
    return ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns())))),
    })
