"""Websocket routes of all apps, behind session auth and a same-origin check."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter

from aikore_site.origin import SameOriginValidator


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
    return patterns


def build_application(django_asgi_app):
    return ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns()))),
    })
