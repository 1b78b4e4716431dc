"""/api/notifications/...: targets (admin role only: their URLs hold secrets), the test button, the
events history and per-instance event kinds. Thin endpoints over notifications.service."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError

from accounts import roles
from instances.models import Instance
from instances.schemas import ErrorOut
from notifications import service
from notifications.apprise_urls import validate_url
from notifications.models import ALL_KINDS, Delivery, Target
from notifications.schemas import (
    ConfigOut,
    EventOut,
    FailedDeliveryOut,
    InstanceKindsIn,
    InstanceKindsOut,
    KindOut,
    TargetIn,
    TargetOut,
    TargetPatch,
    TestOut,
    UrlTestIn,
)

router = Router(tags=["notifications"])

ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}
# Who may do what (accounts/roles.py): everyone with a role sees the history; operators choose an
# instance's event kinds; targets, tests and delivery problems (URLs hold secrets) are admin-only.
VIEW, OPERATE, ADMIN = (roles.api_auth(level) for level in (roles.VIEWER, roles.OPERATOR, roles.ADMIN))
MAX_EVENTS = 200


def get_target(target_id: int) -> Target:
    target = Target.objects.filter(pk=target_id).first()
    if target is None:
        raise HttpError(404, f"Notification target {target_id} not found.")
    return target


def get_instance(instance_id: int) -> Instance:
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise HttpError(404, f"Instance {instance_id} not found.")
    return instance


@router.get("/notifications/kinds", response=list[KindOut], auth=VIEW)
def kinds(request: HttpRequest) -> list[dict]:
    """The event kinds, with what each means and whether it is per instance or system-wide."""
    return service.kinds_json()


@router.get("/notifications/config", response=ConfigOut, auth=VIEW)
def config(request: HttpRequest) -> dict:
    """The thresholds and delivery settings in force (environment variables; read-only here)."""
    return service.config_json()


@router.get("/notifications/targets", response={200: list[TargetOut], 403: ErrorOut}, auth=ADMIN)
def list_targets(request: HttpRequest) -> list[dict]:
    service.sync_env_targets()
    return [service.target_json(t) for t in Target.objects.all()]


@router.post("/notifications/targets", response={201: TargetOut, **ERRORS}, auth=ADMIN)
def create_target(request: HttpRequest, payload: TargetIn) -> Status:
    target = service.create_target(payload.name, payload.url, payload.enabled, payload.kinds)
    return Status(201, service.target_json(target))


@router.get("/notifications/targets/{int:target_id}", response={200: TargetOut, **ERRORS}, auth=ADMIN)
def get_one(request: HttpRequest, target_id: int) -> dict:
    return service.target_json(get_target(target_id))


@router.patch("/notifications/targets/{int:target_id}", response={200: TargetOut, **ERRORS}, auth=ADMIN)
def update_target(request: HttpRequest, target_id: int, payload: TargetPatch) -> dict:
    target = service.update_target(get_target(target_id), payload.dict(exclude_unset=True))
    return service.target_json(target)


@router.delete("/notifications/targets/{int:target_id}", response={204: None, **ERRORS}, auth=ADMIN)
def delete_target(request: HttpRequest, target_id: int) -> Status:
    target = get_target(target_id)
    if target.source == Target.Source.ENV:
        raise HttpError(409, "This target comes from AIKORE_NOTIFY_URLS; remove it there (or switch it off here).")
    target.delete()
    return Status(204, None)


@router.post("/notifications/targets/{int:target_id}/test", response={200: TestOut, **ERRORS}, auth=ADMIN)
def test_target(request: HttpRequest, target_id: int) -> dict:
    """Send a test message now and say whether it arrived (recorded as the target's last status)."""
    target = get_target(target_id)
    ok, error = service.send_test(target)
    return {"ok": ok, "error": error, "target": service.target_json(target)}


@router.post("/notifications/test", response={200: TestOut, **ERRORS}, auth=ADMIN)
def test_url(request: HttpRequest, payload: UrlTestIn) -> dict:
    """Send a test message to a URL before saving it as a target."""
    problem = validate_url(payload.url)
    if problem:
        raise HttpError(422, problem)
    ok, error = service.send(payload.url.strip(), service.TITLE_PREFIX + "test notification",
                             "This is a test from AiKore. If you read this, the URL works.")
    return {"ok": ok, "error": error, "target": None}


@router.get("/notifications/deliveries", response={200: list[FailedDeliveryOut], **ERRORS}, auth=ADMIN)
def failed_deliveries(request: HttpRequest, limit: int = 50) -> list[dict]:
    """The latest deliveries that failed for good or are being retried: what the settings page shows."""
    if not 1 <= limit <= MAX_EVENTS:
        raise HttpError(422, f"limit must be between 1 and {MAX_EVENTS}.")
    rows = (Delivery.objects.filter(status__in=[Delivery.Status.FAILED, Delivery.Status.RETRYING])
            .select_related("event", "target").order_by("-updated_at", "-pk")[:limit])
    return [{**service.delivery_json(d), "event_id": d.event_id, "event_title": d.event.title,
             "target_url": d.target.masked_url} for d in rows]


class EventQuery(Schema):
    limit: int = MAX_EVENTS
    instance_id: int | None = None
    kind: str | None = None


@router.get("/notifications/events", response={200: list[EventOut], **ERRORS}, auth=VIEW)
def list_events(request: HttpRequest, q: Query[EventQuery]) -> list[dict]:
    """The history, newest first (at most the last 200). Deliveries name their target and error
    for the admin role only (targets are the admin's)."""
    if not 1 <= q.limit <= MAX_EVENTS:
        raise HttpError(422, f"limit must be between 1 and {MAX_EVENTS}.")
    if q.kind is not None and q.kind not in ALL_KINDS:
        raise HttpError(422, f"Unknown event kind {q.kind!r}. Known: {', '.join(ALL_KINDS)}.")
    return service.events_json(q.limit, q.instance_id, q.kind, admin=roles.can(request.user, roles.ADMIN))


@router.get("/notifications/instances/{int:instance_id}", response={200: InstanceKindsOut, **ERRORS}, auth=VIEW)
def get_instance_kinds(request: HttpRequest, instance_id: int) -> dict:
    """The instance event kinds this instance sends (all but those turned off for it)."""
    instance = get_instance(instance_id)
    return {"instance_id": instance.pk, "kinds": service.instance_kinds(instance.pk)}


@router.put("/notifications/instances/{int:instance_id}", response={200: InstanceKindsOut, **ERRORS}, auth=OPERATE)
def set_instance_kinds(request: HttpRequest, instance_id: int, payload: InstanceKindsIn) -> dict:
    instance = get_instance(instance_id)
    return {"instance_id": instance.pk, "kinds": service.set_instance_kinds(instance.pk, payload.kinds)}
