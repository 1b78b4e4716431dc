"""Signal receivers: where events enter. Each one records the event (one INSERT) and enqueues the
Huey job that fans it out; it never raises and never waits on a network, so an instance's
lifecycle (the sender) is never slowed or broken by notifications."""

from __future__ import annotations

import logging

from django.db import transaction

from notifications import service, system, tasks

log = logging.getLogger(__name__)


def _dispatch_later(event_id: int) -> None:
    def enqueue() -> None:
        try:
            tasks.dispatch_event(event_id)
        except Exception:
            log.exception("could not enqueue notification event %s", event_id)

    # After the sender's transaction commits (at once when there is none): the job must see the row.
    transaction.on_commit(enqueue)


def on_instance_event(sender: object, instance: object = None, kind: str = "", **details: object) -> None:
    """instances.signals.instance_event (COMMON.md): crashed, failed, finished, install_*, stuck_starting."""
    try:
        event = service.record_instance_event(instance, kind, dict(details))
        if event is not None:
            _dispatch_later(event.pk)
    except Exception:
        log.exception("notification for %s event of %r not recorded", kind, instance)


def on_sample(sender: object, sample: dict | None = None, **kwargs: object) -> None:
    """monitoring.signals.sample_taken: check the thresholds against the sample just taken."""
    try:
        for alert in system.watch.check(sample or {}):
            if service.recently_recorded(alert.kind, alert.subject):
                continue
            event = service.record_event(kind=alert.kind, subject=alert.subject, title=alert.title,
                                         message=alert.message, level=alert.level, details=alert.details)
            _dispatch_later(event.pk)
    except Exception:
        log.exception("system notification check failed")
