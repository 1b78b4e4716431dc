"""Huey job: regenerate the nginx config after instance state changes. Jobs from many threads
queue on proxy.nginx.regeneration_lock; one that finds nothing changed returns at once."""

from __future__ import annotations

import logging

from huey.contrib.djhuey import db_task

from proxy import nginx

log = logging.getLogger(__name__)


@db_task()
def regenerate_nginx() -> None:
    # Returns nothing on purpose: Huey stores non-None results, and nobody reads these (the outcome
    # is in nginx/status.json and /api/health).
    result = nginx.regenerate()
    if result.changed and result.ok:
        log.info("nginx config updated in %.1f ms (reloaded: %s)", result.duration_ms, result.reloaded)
