"""The one NinjaAPI object; each app contributes a router (see urls.py)."""

from __future__ import annotations

from django.conf import settings
from ninja import NinjaAPI

api = NinjaAPI(
    title="AiKore API",
    version=settings.VERSION,
    description="Launch, supervise, proxy and monitor AI WebUI instances.",
    docs_url="/docs",
    urls_namespace="api",
)
