"""Notifications: where messages go (Target), what happened (Event, the history the dashboard
shows), what was sent where (Delivery) and which kinds an instance's owner wants (InstancePreference).

Targets come from two places: rows the user adds (dashboard, API, admin) and AIKORE_NOTIFY_URLS,
mirrored into rows with source="env" so that their kinds, on/off switch and delivery status live in
the same place; their URL is the environment's and cannot be edited or deleted here.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from notifications.apprise_urls import mask_url, validate_url

NAME_MAX = 100


class EventKind(models.TextChoices):
    CRASHED = "crashed", "Crashed, restarting"
    FAILED = "failed", "Failed"
    FINISHED = "finished", "Finished (exit 0)"
    INSTALL_FINISHED = "install_finished", "Install finished"
    INSTALL_FAILED = "install_failed", "Install failed"
    STUCK_STARTING = "stuck_starting", "Stuck starting"
    DISK_LOW = "disk_low", "Low disk space"
    GPU_HOT = "gpu_hot", "GPU too hot"


INSTANCE_KINDS = (
    EventKind.CRASHED, EventKind.FAILED, EventKind.FINISHED, EventKind.INSTALL_FINISHED,
    EventKind.INSTALL_FAILED, EventKind.STUCK_STARTING,
)
SYSTEM_KINDS = (EventKind.DISK_LOW, EventKind.GPU_HOT)
ALL_KINDS = tuple(kind.value for kind in EventKind)

KIND_DESCRIPTIONS = {
    EventKind.CRASHED: "The app exited with an error and AiKore restarts it (one message per crash streak).",
    EventKind.FAILED: "The app gave up: restart budget spent, or it could not start.",
    EventKind.FINISHED: "The app exited by itself with code 0 (e.g. a training script that completed).",
    EventKind.INSTALL_FINISHED: "The blueprint finished building the instance's environment.",
    EventKind.INSTALL_FAILED: "The blueprint's install failed (with the step).",
    EventKind.STUCK_STARTING: "The app never answered its readiness check within its timeout.",
    EventKind.DISK_LOW: "Free space in the data dir fell below the threshold.",
    EventKind.GPU_HOT: "A GPU went over the temperature threshold.",
}


class Level(models.TextChoices):
    """Maps onto Apprise's notify types."""

    INFO = "info", "Info"
    SUCCESS = "success", "Success"
    WARNING = "warning", "Warning"
    FAILURE = "failure", "Failure"


def clean_kinds(value: object, field: str = "kinds") -> list[str]:
    """A list of known event kinds, deduplicated, in the canonical order."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise ValidationError({field: ["Give a list of event kinds, e.g. [\"failed\", \"finished\"]."]})
    unknown = sorted(set(value) - set(ALL_KINDS))
    if unknown:
        raise ValidationError({field: [f"Unknown event kind(s): {', '.join(unknown)}. Known: {', '.join(ALL_KINDS)}."]})
    return [k for k in ALL_KINDS if k in value]


def default_kinds() -> list[str]:
    return list(ALL_KINDS)


class Target(models.Model):
    class Source(models.TextChoices):
        DATABASE = "db", "Dashboard"
        ENV = "env", "AIKORE_NOTIFY_URLS"

    name = models.CharField(max_length=NAME_MAX)
    # The Apprise URL holds the secret (token, password): never shown back in full; see masked_url.
    url = models.TextField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.DATABASE, editable=False)
    enabled = models.BooleanField(default=True)
    kinds = models.JSONField(default=default_kinds, help_text="Event kinds sent to this target.")

    last_status = models.CharField(max_length=16, blank=True, default="", editable=False)
    last_error = models.TextField(blank=True, default="", editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["source", "name", "pk"]
        constraints = [
            # Jobs mirror AIKORE_NOTIFY_URLS concurrently: one row per environment URL, whoever wins.
            models.UniqueConstraint(fields=["url"], condition=models.Q(source="env"), name="one_row_per_env_url"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked_url})"

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def wants(self, kind: str) -> bool:
        return self.enabled and kind in (self.kinds or [])

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        self.name = (self.name or "").strip()
        if not self.name:
            errors["name"] = ["A name is required."]
        problem = validate_url(self.url)
        if problem:
            errors["url"] = [problem]
        else:
            self.url = self.url.strip()
        try:
            self.kinds = clean_kinds(self.kinds)
        except ValidationError as exc:
            errors.update(exc.message_dict)
        if errors:
            raise ValidationError(errors)

    def record_attempt(self, ok: bool, error: str = "") -> None:
        now = timezone.now()
        fields: dict = {"last_status": "sent" if ok else "failed", "last_error": "" if ok else error[:2000],
                        "last_attempt_at": now}
        if ok:
            fields["last_success_at"] = now
        Target.objects.filter(pk=self.pk).update(**fields)
        for key, value in fields.items():
            setattr(self, key, value)


class Event(models.Model):
    """Something the user may want to hear about. Kept (the newest KEEP) as the dashboard's history.

    suppressed_by points at an earlier event that already told the same story (the first crash of
    a crash loop; a "stuck starting" right before the "failed" it causes): targets that were sent
    that one are not sent this one."""

    KEEP = 1000

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    level = models.CharField(max_length=16, choices=Level.choices, default=Level.INFO)
    # "instance:<id>", "disk" or "gpu:<index>": what coalescing compares.
    subject = models.CharField(max_length=64, db_index=True)
    instance = models.ForeignKey("instances.Instance", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="notification_events")
    instance_name = models.CharField(max_length=200, blank=True, default="")
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    suppressed_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["subject", "-created_at"])]

    def __str__(self) -> str:
        return self.title


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["event", "target"], name="one_delivery_per_target")]

    def __str__(self) -> str:
        return f"{self.event} → {self.target.name}: {self.status}"


class InstancePreference(models.Model):
    """Per instance: the event kinds its owner turned off (none by default)."""

    instance = models.OneToOneField("instances.Instance", on_delete=models.CASCADE, related_name="notify_preference")
    muted_kinds = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Notifications of {self.instance}"

    @property
    def kinds(self) -> list[str]:
        return [k.value for k in INSTANCE_KINDS if k.value not in (self.muted_kinds or [])]
