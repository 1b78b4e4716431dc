"""Huey jobs: fan an event out to its targets, then one delivery job per target with retries
(AIKORE_NOTIFY_RETRIES, first after AIKORE_NOTIFY_RETRY_DELAY s, doubling) and a per-target rate
limit (AIKORE_NOTIFY_RATE_LIMIT a minute; messages over it wait for the next window)."""

from __future__ import annotations

from django.conf import settings
from huey.contrib.djhuey import HUEY, db_task
from huey.exceptions import CancelExecution

from notifications import service
from notifications.models import Event


@db_task()
def dispatch_event(event_id: int) -> None:
    service.sync_env_targets()
    event = Event.objects.select_related("suppressed_by").filter(pk=event_id).first()
    if event is None:
        return
    deliveries = service.create_deliveries(event)
    service.publish_event(event)
    for delivery in deliveries:
        deliver_notification(delivery.pk, delivery.target_id)
    service.prune_events()


@db_task(retries=settings.AIKORE_NOTIFY_RETRIES, retry_delay=settings.AIKORE_NOTIFY_RETRY_DELAY,
         retry_backoff=2, context=True)
def deliver_notification(delivery_id: int, target_id: int, task: object = None) -> None:
    HUEY.rate_limit(f"notify-target-{target_id}", settings.AIKORE_NOTIFY_RATE_LIMIT, 60).acquire()
    final = task is None or not getattr(task, "retries", 0)
    if service.attempt_delivery(delivery_id, final=final) is False and not final:
        # CancelExecution(retry=True): Huey requeues after the (doubling) retry delay and logs one
        # line; attempt_delivery already logged why and recorded it on the delivery and target.
        raise CancelExecution("notification not delivered; will retry", retry=True)
