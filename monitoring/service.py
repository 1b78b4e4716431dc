"""The web process's one sampler: started once in daphne's event loop (aikore_site.services), it
samples on its own schedule and pushes each sample to the /ws/system/ group. Nothing is sampled
per client: consumers only read the ring buffer and receive the pushes."""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer

from aikore_site import events

log = logging.getLogger(__name__)
_task: asyncio.Task | None = None


async def _push(sample: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(events.SYSTEM_GROUP, {"type": "system.sample", "sample": sample})


async def start_sampler() -> None:
    global _task
    if _task is not None:
        return
    from monitoring.sampler import get_sampler

    sampler = get_sampler()

    async def runner() -> None:
        while True:
            try:
                await sampler.run(_push)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep sampling whatever one sample did
                log.exception("sampler stopped; restarting in 5 s")
                await asyncio.sleep(5)

    _task = asyncio.ensure_future(runner())
