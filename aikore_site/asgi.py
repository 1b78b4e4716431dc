"""ASGI entry point served by daphne: HTTP to Django, websockets to Channels consumers.

Background services of the web process (the event bridge from worker/watcher, the monitoring
sampler) start once, inside daphne's event loop, on the first connection of any kind."""

import asyncio
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aikore_site.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from aikore_site.routing import build_application  # noqa: E402
from aikore_site.services import start_services  # noqa: E402

_inner = build_application(django_asgi_app)
_started: asyncio.Future | None = None


async def application(scope, receive, send):
    global _started
    if scope["type"] == "lifespan":
        return
    if _started is None:
        _started = asyncio.ensure_future(start_services())
    await asyncio.shield(_started)
    await _inner(scope, receive, send)
