"""Background services that run once per web (daphne) process. A service that fails to start is
logged and skipped: it must never take the pages and the API down with it."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


async def start_services() -> None:
    from aikore_site import events

    try:
        await events.start_bridge()
    except Exception:
        log.exception("event bridge not started")
    try:
        from monitoring.service import start_sampler

        await start_sampler()
    except Exception:
        log.exception("monitoring sampler not started")
