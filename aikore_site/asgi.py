"""ASGI entry point served by daphne: HTTP to Django, websockets to Channels consumers.

Background services of the web process (the event bridge from worker/watcher, the monitoring
sampler) start once, inside daphne's event loop, on the first connection of any kind."""

import asyncio
import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aikore_site.settings")

import django

django.setup(set_prefix=False)

from django.urls import get_resolver  # noqa: E402

from aikore_site.handler import OneHopASGIHandler  # noqa: E402

django_asgi_app = OneHopASGIHandler()

from aikore_site.routing import build_application  # noqa: E402
from aikore_site.services import start_services  # noqa: E402

_inner = build_application(django_asgi_app)

# Import the URLconf (the API, the admin, every view) now rather than on the first request, then
# take everything startup created out of the garbage collector's reach: full collections had to
# walk those ~half a million long-lived objects and stalled every request for 50-120 ms about once
# a second under load (bench/api.py p99). Only objects created later are scanned from here on.
get_resolver().url_patterns  # noqa: B018 (imports the URLconf)
gc.collect()
gc.freeze()
_started: asyncio.Future | None = None


async def application(scope, receive, send):
    global _started
    if scope["type"] == "lifespan":
        return
    if _started is None:
        _started = asyncio.ensure_future(start_services())
    await asyncio.shield(_started)
    await _inner(scope, receive, send)
