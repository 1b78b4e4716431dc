"""Background services that run once per web (daphne) process."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


async def start_services() -> None:
    from aikore_site import events

    try:
        await events.start_bridge()
    except OSError as exc:
        log.error("event bridge not started: %s", exc)
    try:
        from monitoring.service import start_sampler
    except ImportError:
        return
    await start_sampler()
