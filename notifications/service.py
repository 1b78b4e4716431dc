"""The work behind notifications: record an event (with coalescing), decide which targets get it,
send one message through Apprise, and the JSON views the API and the websocket share.

Called by the signal receivers (notifications/receivers.py: record only, then enqueue), by the Huey
jobs (notifications/tasks.py: fan out, deliver with retries) and by the API (test button).

Bounded messages: a crash loop is one message per state change. A "crashed" event that follows
another "crashed" of the same instance within AIKORE_NOTIFY_REPEAT_SECONDS of the first of the
streak is kept in the history but points at that first one (suppressed_by), and the targets that
got the first one are not sent it; likewise the "failed" that a "stuck starting" causes. Each
target also has a rate limit (AIKORE_NOTIFY_RATE_LIMIT messages a minute, Huey's rate_limit): more
wait, they are not dropped.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from aikore_site import events as live_events
from notifications.apprise_urls import mask_url, scrub_secrets
from notifications.models import (
    INSTANCE_KINDS,
    KIND_DESCRIPTIONS,
    SYSTEM_KINDS,
    Delivery,
    Event,
    EventKind,
    InstancePreference,
    Level,
    Target,
    clean_kinds,
)

log = logging.getLogger(__name__)

GROUP = "notifications"  # websocket group of /ws/notifications/
TITLE_PREFIX = "AiKore: "
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 1500
MAX_MESSAGE_CHARS = 4000
STUCK_THEN_FAILED_SECONDS = 120


# --- describing events --------------------------------------------------------------------------


def _tail(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    lines = text.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def _first_line(text: object) -> str:
    return text.strip().splitlines()[0][:500] if isinstance(text, str) and text.strip() else ""


def describe_instance_event(name: str, kind: str, details: dict) -> tuple[str, str, str]:
    """(title, message, level) of an instance event, from the signal's details (COMMON.md)."""
    exit_code = details.get("exit_code")
    reason = _first_line(details.get("reason"))
    tail = _tail(details.get("log_tail"))
    lines: list[str] = []
    if kind == EventKind.CRASHED:
        attempt, limit, delay = details.get("attempt"), details.get("limit"), details.get("delay")
        counter = f" (attempt {attempt}/{limit})" if attempt is not None and limit is not None else ""
        title = f"{name} crashed; restarting{counter}"
        lines.append(f"Exited with code {exit_code}." if exit_code is not None else "Exited unexpectedly.")
        if isinstance(delay, (int, float)):
            lines.append(f"AiKore restarts it in {delay:g} s.")
        lines.append("Further crashes of this streak are not sent; you hear when it runs again or fails.")
        level = Level.WARNING
    elif kind == EventKind.FAILED:
        title = f"{name} failed"
        lines += [reason] if reason else []
        if exit_code is not None:
            lines.append(f"Last exit code: {exit_code}.")
        level = Level.FAILURE
    elif kind == EventKind.FINISHED:
        title = f"{name} finished"
        lines.append("It exited by itself with code 0.")
        level = Level.SUCCESS
    elif kind == EventKind.INSTALL_FINISHED:
        title = f"{name} installed"
        lines.append("Its environment is built; it can be started.")
        level = Level.SUCCESS
    elif kind == EventKind.INSTALL_FAILED:
        step = details.get("step")
        title = f"{name}: install failed" + (f" at step {step}" if step else "")
        lines += [reason] if reason else []
        level = Level.FAILURE
    elif kind == EventKind.STUCK_STARTING:
        timeout = details.get("timeout")
        title = f"{name} is stuck starting"
        lines.append(f"It did not answer its readiness check within {timeout} s; AiKore stopped it."
                     if timeout is not None else "It did not answer its readiness check in time; AiKore stopped it.")
        level = Level.WARNING
    else:
        title = f"{name}: {kind}"
        level = Level.INFO
    if tail and kind in (EventKind.FAILED, EventKind.INSTALL_FAILED, EventKind.STUCK_STARTING):
        lines.append("Last output:\n" + tail)
    return title, "\n".join(lines), level


# --- recording ------------------------------------------------------------------------------------


def _json_safe(details: dict) -> dict:
    return json.loads(json.dumps(details, default=str))


def _coalesce(kind: str, subject: str, now: object) -> Event | None:
    """The earlier event that already told this story, or None (see the module docstring)."""
    if kind not in (EventKind.CRASHED, EventKind.FAILED):
        return None
    previous = Event.objects.filter(subject=subject).order_by("-created_at", "-pk").first()
    if previous is None:
        return None
    if kind == EventKind.CRASHED and previous.kind == EventKind.CRASHED:
        first = Event.objects.filter(pk=previous.suppressed_by_id).first() or previous
        if (now - first.created_at).total_seconds() < settings.AIKORE_NOTIFY_REPEAT_SECONDS:
            return first
    if (kind == EventKind.FAILED and previous.kind == EventKind.STUCK_STARTING
            and (now - previous.created_at).total_seconds() < STUCK_THEN_FAILED_SECONDS):
        return previous
    return None


def record_event(*, kind: str, subject: str, title: str, message: str = "", level: str = Level.INFO,
                 details: dict | None = None, instance_id: int | None = None, instance_name: str = "") -> Event:
    """Insert one event (in its own savepoint, so a failure never spoils a caller's transaction)."""
    now = timezone.now()
    with transaction.atomic():
        event = Event.objects.create(
            created_at=now, kind=kind, level=level, subject=subject[:64], instance_id=instance_id,
            instance_name=instance_name[:200], title=(TITLE_PREFIX + title)[:300], message=message[:MAX_MESSAGE_CHARS],
            details=_json_safe(details or {}), suppressed_by=_coalesce(kind, subject, now),
        )
    return event


def record_instance_event(instance: object, kind: str, details: dict) -> Event | None:
    """The instance_event signal's payload as an Event (None for a kind we don't know)."""
    if kind not in {k.value for k in INSTANCE_KINDS}:
        log.warning("unknown instance event kind %r ignored", kind)
        return None
    pk = getattr(instance, "pk", None)
    name = str(getattr(instance, "name", "") or f"instance {pk}")
    title, message, level = describe_instance_event(name, kind, details)
    return record_event(kind=kind, subject=f"instance:{pk}", title=title, message=message, level=level,
                        details=details, instance_id=pk, instance_name=name)


def recently_recorded(kind: str, subject: str) -> bool:
    """Whether the same condition was already told within the repeat window (system events, so a
    restart of the web process doesn't announce a still-full disk again)."""
    since = timezone.now() - timedelta(seconds=settings.AIKORE_NOTIFY_REPEAT_SECONDS)
    return Event.objects.filter(kind=kind, subject=subject, created_at__gte=since).exists()


def prune_events() -> int:
    """Keep the newest Event.KEEP events (their deliveries go with them)."""
    boundary = list(Event.objects.order_by("-created_at", "-pk").values_list("created_at", "pk")[Event.KEEP - 1:Event.KEEP])
    if not boundary:
        return 0
    created, pk = boundary[0]
    deleted, _ = Event.objects.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk)).delete()
    return deleted


# --- targets --------------------------------------------------------------------------------------


def sync_env_targets() -> None:
    """Mirror AIKORE_NOTIFY_URLS into Target rows (source=env): added, kept (with the user's kinds
    and switch), removed when the variable no longer has them."""
    urls = list(dict.fromkeys(settings.AIKORE_NOTIFY_URLS))
    existing = {t.url: t for t in Target.objects.filter(source=Target.Source.ENV)}
    for index, url in enumerate(urls, start=1):
        if url not in existing:
            # get_or_create: a concurrent sync that inserted it first wins (unique per env URL).
            Target.objects.get_or_create(source=Target.Source.ENV, url=url,
                                         defaults={"name": f"AIKORE_NOTIFY_URLS #{index}"})
    stale = [t.pk for u, t in existing.items() if u not in urls]
    if stale:
        Target.objects.filter(pk__in=stale).delete()


def create_target(name: object, url: object, enabled: bool = True, kinds: object = None) -> Target:
    target = Target(name=name if isinstance(name, str) else "", url=url if isinstance(url, str) else "",
                    enabled=bool(enabled), kinds=list(kinds) if isinstance(kinds, (list, tuple)) else
                    (kinds if kinds is not None else [k.value for k in EventKind]))
    target.clean()
    target.save()
    return target


def update_target(target: Target, changes: dict) -> Target:
    """Apply user edits (name, url, enabled, kinds). An environment target's URL is the
    environment's: changing it here is refused."""
    if "url" in changes and changes["url"] is not None and target.source == Target.Source.ENV \
            and changes["url"] != target.url:
        raise ValidationError({"url": ["This target comes from AIKORE_NOTIFY_URLS; change the URL there."]})
    for field in ("name", "url", "enabled", "kinds"):
        if field in changes and changes[field] is not None:
            setattr(target, field, changes[field])
    target.clean()
    target.save()
    return target


def instance_allows(instance_id: int | None, kind: str) -> bool:
    if instance_id is None or kind not in {k.value for k in INSTANCE_KINDS}:
        return True
    muted = InstancePreference.objects.filter(instance_id=instance_id).values_list("muted_kinds", flat=True).first()
    return kind not in (muted or [])


def matching_targets(event: Event) -> list[Target]:
    """Enabled targets that want this kind, for an instance that wants it; minus those that were
    sent the event this one is coalesced into."""
    if not instance_allows(event.instance_id, event.kind):
        return []
    targets = [t for t in Target.objects.filter(enabled=True) if t.wants(event.kind)]
    first = event.suppressed_by
    if first is not None and instance_allows(first.instance_id, first.kind):
        targets = [t for t in targets if not t.wants(first.kind)]
    return targets


def create_deliveries(event: Event) -> list[Delivery]:
    deliveries = []
    for target in matching_targets(event):
        delivery, created = Delivery.objects.get_or_create(event=event, target=target)
        if created:  # a repeated dispatch (the job ran twice) sends nothing twice
            deliveries.append(delivery)
    return deliveries


# --- per-instance preferences ----------------------------------------------------------------------


def instance_kinds(instance_id: int) -> list[str]:
    pref = InstancePreference.objects.filter(instance_id=instance_id).first()
    return pref.kinds if pref else [k.value for k in INSTANCE_KINDS]


def set_instance_kinds(instance_id: int, kinds: object) -> list[str]:
    """Which instance event kinds this instance sends (the others are muted for it)."""
    wanted = clean_kinds(kinds)
    system = [k for k in wanted if k in {s.value for s in SYSTEM_KINDS}]
    if system:
        raise ValidationError({"kinds": [f"{', '.join(system)} are system events, not an instance's."]})
    muted = [k.value for k in INSTANCE_KINDS if k.value not in wanted]
    InstancePreference.objects.update_or_create(instance_id=instance_id, defaults={"muted_kinds": muted})
    return instance_kinds(instance_id)


# --- sending --------------------------------------------------------------------------------------


def send(url: str, title: str, body: str, level: str = Level.INFO) -> tuple[bool, str]:
    """One message through Apprise. Returns (delivered, error message). Never raises."""
    import apprise

    try:
        notifier = apprise.Apprise(asset=apprise.AppriseAsset(app_id="AiKore", app_desc="AiKore"))
        if not notifier.add(url):
            return False, f"Apprise cannot use this URL ({mask_url(url)})."
        result = notifier.notify(
            body=body or title, title=title, notify_type=apprise.NotifyType(level),
            body_format=apprise.NotifyFormat.TEXT, timeout=settings.AIKORE_NOTIFY_TIMEOUT,
        )
    except Exception as exc:  # a broken plugin must not break the job
        return False, scrub_secrets(f"{exc.__class__.__name__}: {exc}", url)[:500]
    if result:
        return True, ""
    problems = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    error = " ".join(dict.fromkeys(problems)) or f"Not delivered ({result.status.name.lower()})."
    return False, scrub_secrets(error, url)[:1000]


def attempt_delivery(delivery_id: int, final: bool) -> bool | None:
    """Send one delivery once. True: sent; False: failed (retry unless final); None: nothing to do
    (gone, already sent, or its target was switched off meanwhile)."""
    delivery = Delivery.objects.select_related("event", "target").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (Delivery.Status.SENT, Delivery.Status.FAILED):
        return None
    target, event = delivery.target, delivery.event
    if not target.enabled:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, error="Target switched off.",
                                                       updated_at=timezone.now())
        return None
    ok, error = send(target.url, event.title, event.message, event.level)
    status = Delivery.Status.SENT if ok else (Delivery.Status.FAILED if final else Delivery.Status.RETRYING)
    attempts = delivery.attempts + 1
    Delivery.objects.filter(pk=delivery.pk).update(status=status, attempts=attempts, error=error,
                                                   updated_at=timezone.now())
    target.record_attempt(ok, error)
    if not ok:
        log.warning("notification %s to %s (%s) failed, attempt %d%s: %s", event.pk, target.name,
                    target.masked_url, attempts, " (giving up)" if final else "", error)
    publish_event(event)
    return ok


def send_test(target: Target) -> tuple[bool, str]:
    ok, error = send(target.url, TITLE_PREFIX + "test notification",
                     f"This is a test from AiKore to the target {target.name!r}. If you read this, it works.")
    target.record_attempt(ok, error)
    return ok, error


# --- JSON views (API and websocket) ----------------------------------------------------------------


def _iso(value: object) -> str | None:
    return value.isoformat() if value else None


def delivery_json(delivery: Delivery) -> dict:
    return {"id": delivery.pk, "target_id": delivery.target_id, "target_name": delivery.target.name,
            "status": delivery.status, "attempts": delivery.attempts, "error": delivery.error,
            "updated_at": _iso(delivery.updated_at)}


def event_json(event: Event, deliveries: list[Delivery] | None = None, admin: bool = True) -> dict:
    """An event as the API and /ws/notifications/ give it; admin=False (viewers, operators): each
    delivery's status without its target's name and error (targets are the admin role's)."""
    if deliveries is None:
        deliveries = list(event.deliveries.select_related("target").order_by("pk"))
    data = {
        "id": event.pk, "created_at": _iso(event.created_at), "kind": event.kind,
        "kind_label": EventKind(event.kind).label if event.kind in EventKind.values else event.kind,
        "level": event.level, "instance_id": event.instance_id, "instance_name": event.instance_name,
        "title": event.title, "message": event.message, "details": event.details,
        "suppressed_by": event.suppressed_by_id,
        "deliveries": [delivery_json(d) for d in deliveries],
    }
    return data if admin else without_target_details(data)


def without_target_details(event: dict) -> dict:
    """An event_json() for someone without the admin role: deliveries keep their status and
    attempts; the target's name and the error text are the admin role's, as the targets are."""
    return {**event, "deliveries": [{**d, "target_name": "", "error": ""} for d in event["deliveries"]]}


def events_json(limit: int = 200, instance_id: int | None = None, kind: str | None = None,
                admin: bool = True) -> list[dict]:
    query = Event.objects.all()
    if instance_id is not None:
        query = query.filter(instance_id=instance_id)
    if kind:
        query = query.filter(kind=kind)
    events = list(query.order_by("-created_at", "-pk")[:limit])
    by_event: dict[int, list[Delivery]] = {e.pk: [] for e in events}
    for delivery in Delivery.objects.filter(event_id__in=by_event).select_related("target").order_by("pk"):
        by_event[delivery.event_id].append(delivery)
    return [event_json(e, by_event[e.pk], admin) for e in events]


def target_json(target: Target) -> dict:
    failures = Delivery.objects.filter(target=target, status=Delivery.Status.FAILED).count()
    return {
        "id": target.pk, "name": target.name, "url": target.masked_url, "source": target.source,
        "enabled": target.enabled, "kinds": target.kinds, "last_status": target.last_status,
        "last_error": target.last_error, "last_attempt_at": _iso(target.last_attempt_at),
        "last_success_at": _iso(target.last_success_at), "failed_deliveries": failures,
    }


def kinds_json() -> list[dict]:
    instance_kinds_set = {k.value for k in INSTANCE_KINDS}
    return [{"kind": k.value, "label": k.label, "scope": "instance" if k.value in instance_kinds_set else "system",
             "description": KIND_DESCRIPTIONS[k]} for k in EventKind]


def config_json() -> dict:
    return {
        "env_targets": len(settings.AIKORE_NOTIFY_URLS),
        "disk_free_percent": settings.AIKORE_NOTIFY_DISK_FREE_PERCENT,
        "disk_free_bytes": settings.AIKORE_NOTIFY_DISK_FREE_BYTES,
        "gpu_temp": settings.AIKORE_NOTIFY_GPU_TEMP,
        "retries": settings.AIKORE_NOTIFY_RETRIES,
        "retry_delay": settings.AIKORE_NOTIFY_RETRY_DELAY,
        "rate_limit_per_minute": settings.AIKORE_NOTIFY_RATE_LIMIT,
        "repeat_seconds": settings.AIKORE_NOTIFY_REPEAT_SECONDS,
    }


def publish_event(event: Event) -> None:
    """Tell open dashboards (new event, or a delivery's status changed). Never raises."""
    try:
        live_events.publish(GROUP, {"type": "notification.event", "event": event_json(event)})
    except Exception:
        log.exception("publishing notification event %s failed", event.pk)
