"""The Instance model: what the user wants (desired state and settings) next to what was last
observed (status, pid). Operations are methods here; every entry point (API, admin, CLI, UI,
tasks) calls them so each operation is written once."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from aikore_site import disk
from aikore_site.files import atomic_write
from instances import supervisor, validators
from instances.blueprints import Blueprint, BlueprintNotFound, get_blueprint, normalise_id

log = logging.getLogger(__name__)


class InstanceStatus(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    FAILED = "failed", "Failed"
    INSTALLING = "installing", "Installing"


ACTIVE_STATUSES = (InstanceStatus.STARTING, InstanceStatus.RUNNING, InstanceStatus.INSTALLING)


class Conflict(ValidationError):
    """The input is well-formed but clashes with existing state (name taken, port busy): HTTP 409."""


class ServiceUnavailable(RuntimeError):
    """An operation needs a part of AiKore that is down (supervisord): HTTP 503, with the reason."""


class InstanceManager(models.Manager["Instance"]):
    def create_instance(
        self,
        *,
        name: str,
        blueprint: str,
        gpu_ids: object = "",
        autostart: bool = False,
        persistent_mode: bool = False,
        port: object = None,
        launch_args: object = "",
        output_path: object = "",
        script: str | None = None,
    ) -> Instance:
        """Validate, create the row and the instance directory with its own copy of the
        blueprint as launch.sh. Raises ValidationError (with field keys) on bad input."""
        from instances.gpus import detected_gpu_count

        name = validators.validate_name(name)
        slug = validators.slug_for(name)
        try:
            bp = get_blueprint(blueprint)
        except BlueprintNotFound as exc:
            raise ValidationError({"blueprint": [str(exc)]}) from None
        instance = Instance(
            name=name,
            slug=slug,
            base_blueprint=bp.id,
            gpu_ids=validators.validate_gpu_ids(gpu_ids, detected_gpu_count()),
            autostart=bool(autostart),
            persistent_mode=bool(persistent_mode),
            port=validators.validate_port(port),
            launch_args=validators.validate_launch_args(launch_args),
            output_path=validators.validate_output_path(output_path),
        )
        instance.check_unique()
        if instance.port is not None:
            from instances.ports import port_is_bindable

            if not port_is_bindable(instance.port):
                raise Conflict({"port": [f"Port {instance.port} is already in use on this machine."]})
        try:
            with transaction.atomic():
                instance.save()
        except IntegrityError:
            # Lost a race against a concurrent create: report it like check_unique() would.
            instance.pk = None
            instance.check_unique()
            raise Conflict({"name": ["An instance with this name already exists."]}) from None
        instance.prepare_directory(bp, script=script)
        instance.publish()  # other open dashboards show it at once
        return instance


class Instance(models.Model):
    name = models.CharField(max_length=validators.NAME_MAX, unique=True)
    slug = models.SlugField(max_length=validators.NAME_MAX, unique=True, editable=False)
    base_blueprint = models.CharField(max_length=64)
    gpu_ids = models.CharField(max_length=200, blank=True, default="", help_text='e.g. "0,1"; empty = all GPUs')
    autostart = models.BooleanField(default=False)
    persistent_mode = models.BooleanField(default=False)
    launch_args = models.TextField(blank=True, default="")
    output_path = models.CharField(max_length=200, blank=True, default="")

    # Desired state: should it be running? Survives restarts of the web and worker processes.
    want_running = models.BooleanField(default=False, editable=False)

    status = models.CharField(max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.STOPPED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    pid = models.IntegerField(null=True, blank=True)
    # psutil create_time() of pid: a PID alone can be reused after a crash.
    pid_create_time = models.FloatField(null=True, blank=True, editable=False)
    port = models.IntegerField(null=True, blank=True, unique=True)
    public_port = models.IntegerField(null=True, blank=True, unique=True)
    vnc_port = models.IntegerField(null=True, blank=True, unique=True)
    vnc_display = models.IntegerField(null=True, blank=True, unique=True)

    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    restart_count = models.IntegerField(default=0)
    # Bumped on every user start/stop so a delayed crash-restart job from an earlier run is ignored.
    generation = models.IntegerField(default=0, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstanceManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # --- derived values -------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return Path(settings.INSTANCES_DIR) / self.slug

    @property
    def script_path(self) -> Path:
        return self.directory / "launch.sh"

    @property
    def log_path(self) -> Path:
        return self.directory / "output.log"

    @property
    def output_dir(self) -> Path:
        return Path(settings.OUTPUTS_DIR) / (self.output_path or self.slug)

    @property
    def url_path(self) -> str:
        return f"/instance/{self.slug}/"

    @property
    def supervisor_group(self) -> str:
        return f"instance-{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def blueprint(self) -> Blueprint | None:
        try:
            return get_blueprint(self.base_blueprint)
        except BlueprintNotFound:
            return None

    def environment(self) -> dict[str, str]:
        """The variables of the blueprint contract (DESIGN.md), computed in this one place."""
        env = {
            "WEBUI_PORT": str(self.port or ""),
            "INSTANCE_NAME": self.name,
            "INSTANCE_SLUG": self.slug,
            "INSTANCE_CONF_DIR": str(self.directory),
            "INSTANCE_OUTPUT_DIR": str(self.output_dir),
            "AIKORE_MODELS_DIR": str(settings.MODELS_DIR),
            "AIKORE_DATA_DIR": str(settings.AIKORE_DATA_DIR),
            "AIKORE_HOME": str(settings.BASE_DIR),
            "SUBFOLDER": self.url_path,
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "BLUEPRINT_ID": normalise_id(self.base_blueprint),
            "AIKORE_LAUNCH_ARGS": self.launch_args,
            "PYTHONUNBUFFERED": "1",
        }
        if self.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_ids
        if self.persistent_mode and self.vnc_display is not None:
            env["DISPLAY"] = f":{self.vnc_display}"
        return env

    # --- validation ----------------------------------------------------------------------

    def check_unique(self) -> None:
        others = Instance.objects.exclude(pk=self.pk)
        if others.filter(name__iexact=self.name).exists():
            raise Conflict({"name": [f"An instance named {self.name!r} already exists."]})
        if others.filter(slug=self.slug).exists():
            raise Conflict(
                {"name": [f"Name {self.name!r} is too close to an existing instance's (same URL /instance/{self.slug}/)."]}
            )
        if self.port is not None and others.filter(port=self.port).exists():
            raise Conflict({"port": [f"Port {self.port} is already assigned to another instance."]})

    # --- files ----------------------------------------------------------------------------

    def prepare_directory(self, bp: Blueprint | None = None, script: str | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if script is None and not self.script_path.exists():
            bp = bp or get_blueprint(self.base_blueprint)
            script = bp.read_script()
        if script is not None:
            atomic_write(self.script_path, script, 0o755)

    def read_script(self) -> str:
        return self.script_path.read_text(encoding="utf-8", errors="replace")

    def write_script(self, text: str) -> None:
        atomic_write(self.script_path, text, 0o755)

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def append_log(self, line: str) -> None:
        """AiKore's own notes in the instance log ([aikore] lines), e.g. restart decisions. Never
        raises: a state change must not depend on writing a note (a full disk, a removed directory)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"[aikore {stamp}] {line}\n")
        except OSError as exc:
            log.warning("could not write to %s (%s): %s", self.log_path, exc.strerror or exc, line)

    # --- state ----------------------------------------------------------------------------

    def set_status(self, status: str, **fields: object) -> None:
        """Persist a status change (plus any observed fields) and tell the websocket clients."""
        self.status = status
        self.status_changed_at = timezone.now()
        for key, value in fields.items():
            setattr(self, key, value)
        update = ["status", "status_changed_at", "updated_at", *fields.keys()]
        Instance.objects.filter(pk=self.pk).update(
            **{k: getattr(self, k) for k in update if k != "updated_at"}, updated_at=timezone.now()
        )
        self.publish()

    def observe(self, **fields: object) -> None:
        """Record observed facts (pid, ...) without touching status: a status read earlier by
        this process may be stale, and writing it back would undo another process's change."""
        for key, value in fields.items():
            setattr(self, key, value)
        Instance.objects.filter(pk=self.pk).update(**fields, updated_at=timezone.now())
        self.refresh_from_db()
        self.publish()

    def publish(self) -> None:
        from aikore_site import events

        events.publish_instance(self)

    def as_event(self) -> dict:
        """What websocket clients get on every change: the same full view as the API and the
        snapshot, so a client never has to fetch an instance it learns about from an event."""
        from instances.serializers import instance_summary

        return instance_summary(self)

    # --- operations: each enqueues the one Huey job that does the work --------------------

    @staticmethod
    def require_supervisor() -> None:
        """Refuse an operation now rather than accept a job that cannot be carried out."""
        if not supervisor.is_available():
            raise ServiceUnavailable(
                "supervisord is not reachable, so AiKore cannot start or stop processes right now; "
                "see /api/health. It recovers by itself; try again in a few seconds."
            )

    def start(self) -> str:
        from instances import tasks

        self.require_supervisor()

        def request() -> str:
            Instance.objects.filter(pk=self.pk).exclude(status__in=ACTIVE_STATUSES).update(restart_count=0)
            Instance.objects.filter(pk=self.pk).update(want_running=True, generation=models.F("generation") + 1)
            self.refresh_from_db()
            return tasks.start_instance(self.pk).id

        return disk.retry_if_full(request)  # the reserve makes room on a full disk

    def stop(self) -> str:
        from instances import tasks

        self.require_supervisor()

        def request() -> str:
            Instance.objects.filter(pk=self.pk).update(want_running=False, generation=models.F("generation") + 1)
            self.refresh_from_db()
            return tasks.stop_instance(self.pk, self.generation).id

        return disk.retry_if_full(request)  # the reserve makes room on a full disk

    def restart(self) -> str:
        from instances import tasks

        self.require_supervisor()

        def request() -> str:
            Instance.objects.filter(pk=self.pk).update(want_running=True, generation=models.F("generation") + 1)
            self.refresh_from_db()
            return tasks.restart_instance(self.pk).id

        return disk.retry_if_full(request)  # the reserve makes room on a full disk

    RESTART_FIELDS = ("name", "gpu_ids", "launch_args", "port", "output_path", "persistent_mode")

    EDITABLE_FIELDS = ("name", "gpu_ids", "port", "autostart", "persistent_mode", "launch_args", "output_path")

    def clean_changes(self, changes: dict) -> dict:
        """Validate user edits of EDITABLE_FIELDS (every entry point: API, admin, UI) and return
        the ones that really change something, normalised. Raises ValidationError (or Conflict)
        keyed by field, with every bad field reported at once."""
        from instances.gpus import detected_gpu_count
        from instances.ports import port_is_bindable

        checks = {
            "name": validators.validate_name,
            "gpu_ids": lambda value: validators.validate_gpu_ids(value, detected_gpu_count()),
            "launch_args": validators.validate_launch_args,
            "output_path": validators.validate_output_path,
            "port": validators.validate_port,
        }
        clean: dict = {}
        errors: dict[str, list[str]] = {}
        for field, value in changes.items():
            try:
                if field in checks:
                    clean[field] = checks[field](value)
                elif field in ("autostart", "persistent_mode"):
                    if not isinstance(value, bool):
                        raise ValidationError({field: [f"{field} must be true or false."]})
                    clean[field] = value
            except ValidationError as exc:
                errors.update(exc.message_dict if hasattr(exc, "error_dict") else {field: exc.messages})
        if errors:
            raise ValidationError(errors)
        clean = {k: v for k, v in clean.items() if getattr(self, k) != v}
        if not clean:
            return clean
        candidate = Instance(pk=self.pk, name=clean.get("name", self.name), port=clean.get("port", self.port))
        candidate.slug = validators.slug_for(candidate.name)
        candidate.check_unique()
        if "port" in clean and clean["port"] is not None and not port_is_bindable(clean["port"]):
            raise Conflict({"port": [f"Port {clean['port']} is already in use on this machine."]})
        if candidate.slug != self.slug and (Path(settings.INSTANCES_DIR) / candidate.slug).exists():
            raise Conflict({"name": [f"A directory for {candidate.slug!r} already exists in instances/."]})
        return clean

    def update_settings(self, changes: dict) -> dict:
        """Apply user edits (the seed's unfinished "Update"). Autostart applies live; a change the
        running process must see restarts it; a rename moves the directory while stopped.
        Returns {"changed": [...], "restarted": bool, "message": str}."""
        from instances import lifecycle

        clean = self.clean_changes(changes)
        changed = list(clean)
        if not changed:
            return {"changed": [], "restarted": False, "message": "Nothing changed."}
        candidate_slug = validators.slug_for(clean.get("name", self.name))

        needs_restart = any(k in self.RESTART_FIELDS for k in changed)
        was_running = self.is_active and needs_restart
        renaming = "name" in changed and candidate_slug != self.slug
        if renaming:
            new_dir = Path(settings.INSTANCES_DIR) / candidate_slug
            if self.is_active or self.status == InstanceStatus.STOPPING:
                lifecycle.halt(self)  # the process holds files in the old directory
            self.refresh_from_db()
            if self.directory.exists():
                os.rename(self.directory, new_dir)
            clean["slug"] = candidate_slug
        for key, value in clean.items():
            setattr(self, key, value)
        self.save(update_fields=[*clean.keys(), "updated_at"])
        self.publish()
        message = "Saved."
        if was_running:
            if renaming:
                self.start()
            else:
                self.restart()
            message = f"Saved; restarting to apply {', '.join(k for k in changed if k in self.RESTART_FIELDS)}."
        elif needs_restart:
            message = "Saved; applies at the next start."
        return {"changed": changed, "restarted": was_running, "message": message}

    def clone(self, name: str) -> Instance:
        """A new instance with this one's launch script and settings, its own name and port."""
        return Instance.objects.create_instance(
            name=name,
            blueprint=self.base_blueprint,
            gpu_ids=self.gpu_ids,
            autostart=self.autostart,
            persistent_mode=self.persistent_mode,
            launch_args=self.launch_args,
            script=self.read_script() if self.script_path.exists() else None,
        )

    def delete_everything(self, keep_files: bool = False) -> None:
        """Stop synchronously (the caller waits), remove the supervisord group, the row and the
        directory (moved to trash/ with keep_files)."""
        from aikore_site import events
        from instances import lifecycle

        lifecycle.halt(self, final=True)
        directory = self.directory
        pk = self.pk
        self.delete()
        events.publish(events.INSTANCES_GROUP, {"type": "instance.deleted", "id": pk})
        if directory.exists():
            if keep_files:
                trash = Path(settings.TRASH_DIR) / f"{self.slug}-{int(time.time())}"
                shutil.move(str(directory), str(trash))
            else:
                shutil.rmtree(directory, ignore_errors=True)
