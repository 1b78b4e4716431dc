from __future__ import annotations

from ninja import Schema
from pydantic import Field


class KindOut(Schema):
    kind: str
    label: str
    scope: str = Field(..., description='"instance" (per instance too) or "system".')
    description: str


class TargetOut(Schema):
    id: int
    name: str
    url: str = Field(..., description="Masked: scheme and host only; the full URL (a secret) is never shown back.")
    source: str = Field(..., description='"db" (added here) or "env" (AIKORE_NOTIFY_URLS: URL not editable).')
    enabled: bool
    kinds: list[str]
    last_status: str = Field(..., description='"", "sent" or "failed": the last attempt to this target.')
    last_error: str
    last_attempt_at: str | None
    last_success_at: str | None
    failed_deliveries: int


class TargetIn(Schema):
    name: str = Field(..., max_length=100)
    url: str = Field(..., description="An Apprise URL, e.g. json://host:port/path, ntfy://topic, discord://id/token.")
    enabled: bool = True
    kinds: list[str] | None = Field(None, description="Event kinds sent to it; default: all.")


class TargetPatch(Schema):
    name: str | None = Field(None, max_length=100)
    url: str | None = None
    enabled: bool | None = None
    kinds: list[str] | None = None


class UrlTestIn(Schema):
    url: str


class TestOut(Schema):
    ok: bool
    error: str
    target: TargetOut | None = None


class DeliveryOut(Schema):
    id: int
    target_id: int
    target_name: str
    status: str = Field(..., description="pending, retrying, sent or failed.")
    attempts: int
    error: str
    updated_at: str | None


class EventOut(Schema):
    id: int
    created_at: str | None
    kind: str
    kind_label: str
    level: str
    instance_id: int | None
    instance_name: str
    title: str
    message: str
    details: dict
    suppressed_by: int | None = Field(None, description="The earlier event that already told this (not re-sent).")
    deliveries: list[DeliveryOut]


class FailedDeliveryOut(DeliveryOut):
    event_id: int
    event_title: str
    target_url: str


class InstanceKindsIn(Schema):
    kinds: list[str] = Field(..., description="Instance event kinds this instance sends; the others are muted.")


class InstanceKindsOut(Schema):
    instance_id: int
    kinds: list[str]


class ConfigOut(Schema):
    env_targets: int
    disk_free_percent: float
    disk_free_bytes: int
    gpu_temp: int
    retries: int
    retry_delay: float
    rate_limit_per_minute: int
    repeat_seconds: int
