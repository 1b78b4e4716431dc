"""The Instance model: what the user wants (desired state and settings) next to what was last
observed (status, pid). Operations are methods here; every entry point (API, admin, CLI, UI,
tasks) calls them so each operation is written once."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from functools import partial
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from aikore_site import disk
from aikore_site.files import atomic_write, open_no_symlink, shared_dir
from instances import supervisor, torchvariants, validators
from instances.blueprints import Blueprint, BlueprintNotFound, get_blueprint, load_blueprint, normalise_id

# Names inside an instance directory (DESIGN: "its own copy of the blueprint, its environment and
# its log file"). The blueprint builds ENV_DIRNAME and APP_DIRNAME through functions.sh.
ENV_DIRNAME = "env"
APP_DIRNAME = "app"
INSTALL_STATUS_FILE = "install.json"
INSTALL_RECORD_FILE = "install-inputs.sha256"
# Files AiKore itself writes in an instance directory; anything else there is the user's.
AIKORE_FILES = {"launch.sh", "env.json", ".logindex.json", INSTALL_STATUS_FILE, INSTALL_RECORD_FILE,
                "extra_model_paths.yaml", ENV_DIRNAME, "desktop.json", "desktop.log"}

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
        allowed_origins: object = "",
        python_version: object = None,
        torch_variant: object = None,
        git_ref: object = "",
        parent: object = None,
        script: str | None = None,
    ) -> Instance:
        """Validate, create the row and the instance directory with its own copy of the
        blueprint as launch.sh. Raises ValidationError (with field keys) on bad input.

        With `parent` (an Instance or its id) the new instance is a satellite: it runs the
        parent's code and environment (never installs), with its own name, port, GPUs, outputs
        and log; blueprint, script, Python, torch and git ref are the parent's."""
        from instances.gpus import detected_gpu_count

        name = validators.validate_name(name)
        slug = validators.slug_for(name)
        parent_instance = _parent_for(parent)
        if parent_instance is not None:
            blueprint = parent_instance.base_blueprint
            python_version, torch_variant = parent_instance.python_version, parent_instance.torch_variant
            git_ref = parent_instance.git_ref
            if script is None and parent_instance.script_path.exists():
                script = parent_instance.read_script()
        try:
            bp = get_blueprint(blueprint)
        except BlueprintNotFound as exc:
            raise ValidationError({"blueprint": [str(exc)]}) from None
        if bp.kind == "library":
            raise ValidationError({"blueprint": [f"{bp.id!r} is a library of shell functions, not an app."]})
        errors: dict[str, list[str]] = {}
        checked: dict[str, object] = {}
        for field, check, value in (
            ("python_version", validators.validate_python_version,
             bp.python_version if python_version is None else python_version),
            ("torch_variant", validators.validate_torch_variant, torch_variant),
            ("git_ref", validators.validate_git_ref, git_ref),
        ):
            try:
                checked[field] = check(value)
            except ValidationError as exc:
                errors.update(exc.message_dict)
        if errors:
            raise ValidationError(errors)
        instance = Instance(
            name=name,
            slug=slug,
            base_blueprint=bp.id,
            gpu_ids=validators.validate_gpu_ids(gpu_ids, detected_gpu_count()),
            autostart=bool(autostart),
            # A desktop program has nothing to show but its desktop: persistent mode is implied.
            persistent_mode=bool(persistent_mode) or bp.desktop_program,
            port=validators.validate_port(port),
            launch_args=validators.validate_launch_args(launch_args),
            output_path=validators.validate_output_path(output_path),
            allowed_origins=validators.validate_allowed_origins(allowed_origins),
            parent=parent_instance,
            **checked,
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


def _parent_for(parent: object) -> Instance | None:
    """The instance a new satellite hangs off: given as an Instance, an id or a name."""
    if parent is None or parent == "":
        return None
    if isinstance(parent, Instance):
        found: Instance | None = parent
    elif isinstance(parent, int) and not isinstance(parent, bool):
        found = Instance.objects.filter(pk=parent).first()
    elif isinstance(parent, str):
        found = Instance.objects.filter(name=parent).first() or Instance.objects.filter(slug=parent).first()
    else:
        raise ValidationError({"parent": ["Parent must be an instance id or name."]})
    if found is None:
        raise ValidationError({"parent": [f"No instance {parent!r} to be the parent."]})
    if found.parent_id is not None:
        raise ValidationError({"parent": [f"{found.name!r} is itself a satellite of another instance; "
                                          "choose the instance that owns the code and environment."]})
    return found


class Instance(models.Model):
    name = models.CharField(max_length=validators.NAME_MAX, unique=True)
    slug = models.SlugField(max_length=validators.NAME_MAX, unique=True, editable=False)
    base_blueprint = models.CharField(max_length=64)
    gpu_ids = models.CharField(max_length=200, blank=True, default="", help_text='e.g. "0,1"; empty = all GPUs')
    autostart = models.BooleanField(default=False)
    persistent_mode = models.BooleanField(default=False)
    launch_args = models.TextField(blank=True, default="")
    output_path = models.CharField(max_length=200, blank=True, default="")
    # Origins (scheme://host[:port]) besides the app's own whose pages may open websockets to it
    # and send it writes; nginx refuses any other foreign Origin. Space-separated, validated.
    allowed_origins = models.TextField(blank=True, default="")
    # The environment (blueprint defaults at creation; see instances/environments.py).
    python_version = models.CharField(max_length=16, blank=True, default="",
                                      help_text="e.g. 3.12; empty = the Python uv finds")
    torch_variant = models.CharField(max_length=16, blank=True, default=torchvariants.AUTO,
                                     help_text="auto (from the NVIDIA driver), cpu, cu128, ...")
    git_ref = models.CharField(max_length=200, blank=True, default="",
                               help_text="branch, tag or commit instead of the blueprint's")
    # A satellite runs its parent's code and environment with its own port, GPUs, outputs and log.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="satellites")

    # Desired state: should it be running? Survives restarts of the web and worker processes.
    want_running = models.BooleanField(default=False, editable=False)

    status = models.CharField(max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.STOPPED)
    status_changed_at = models.DateTimeField(default=timezone.now)
    pid = models.IntegerField(null=True, blank=True)
    # psutil create_time() of pid: a PID alone can be reused after a crash.
    pid_create_time = models.FloatField(null=True, blank=True, editable=False)
    port = models.IntegerField(null=True, blank=True, unique=True)
    public_port = models.IntegerField(null=True, blank=True, unique=True)
    # Persistent mode (instances/desktop.py): the desktop's X display and VNC port while it runs
    # (given back at stop), and the loopback port nginx serves the app on to the kiosk browser (kept,
    # like `port`: it is the browser's origin, which its storage and settings belong to).
    vnc_port = models.IntegerField(null=True, blank=True, unique=True)
    vnc_display = models.IntegerField(null=True, blank=True, unique=True)
    kiosk_port = models.IntegerField(null=True, blank=True, unique=True)

    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    restart_count = models.IntegerField(default=0)
    # While `installing`: the step the blueprint reported, and its progress (0..1) when known.
    install_step = models.CharField(max_length=200, blank=True, default="")
    install_progress = models.FloatField(null=True, blank=True)
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
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_satellite(self) -> bool:
        return self.parent_id is not None

    @property
    def env_owner(self) -> Instance:
        """The instance whose directory holds the code and environment this one runs."""
        return self.parent if self.parent_id is not None else self

    @property
    def env_dir(self) -> Path:
        return self.env_owner.directory / ENV_DIRNAME

    @property
    def app_dir(self) -> Path:
        return self.env_owner.directory / APP_DIRNAME

    @property
    def install_status_path(self) -> Path:
        return self.directory / INSTALL_STATUS_FILE

    @property
    def install_record_path(self) -> Path:
        return self.env_owner.directory / INSTALL_RECORD_FILE

    def blueprint(self) -> Blueprint | None:
        try:
            return get_blueprint(self.base_blueprint)
        except BlueprintNotFound:
            return None

    def proxy_mode(self) -> str:
        """How the proxy serves it (header aikore.proxy of the script it runs): strip, keep or origin."""
        meta = self.metadata()
        return meta.proxy_mode if meta else "strip"

    def desktop_kind(self) -> str:
        """What its desktop shows: "program" (a desktop program's windows), "browser" (persistent
        mode: the app in a kiosk browser), or "" (no desktop)."""
        meta = self.metadata()
        if meta is not None and meta.desktop_program:
            return "program"
        return "browser" if self.persistent_mode else ""

    @property
    def desktop_path(self) -> str:
        """The desktop's viewer (noVNC), on the app's origin, behind the same access check."""
        return f"{self.url_path}desktop/"

    def app_location(self) -> tuple[str, str]:
        """Where the dashboard sends users: (origin id, path). Origin ids name configured origins
        only ("apps", "port:<n>", "host:<slug>"); the browser supplies the host name (proxy/origins.py)."""
        mode = self.proxy_mode()
        path = self.url_path if mode == "keep" else "/"
        if settings.AIKORE_APPS_DOMAIN:
            return f"host:{self.slug}", path
        if mode == "origin" and self.public_port:
            return f"port:{self.public_port}", path
        return "apps", self.url_path

    def metadata(self) -> Blueprint | None:
        """The header of the script this instance runs: its own launch.sh (which the user may
        have edited), else its base blueprint's."""
        base = self.blueprint()
        if self.script_path.is_file():
            try:
                return load_blueprint(self.script_path, base.custom if base else True, blueprint_id=self.base_blueprint)
            except OSError:
                pass
        return base

    def torch_variant_resolved(self) -> str:
        return torchvariants.resolve(self.torch_variant or torchvariants.AUTO)

    def environment(self, action: str = "start", install_only: bool = False) -> dict[str, str]:
        """The variables of the blueprint contract (DESIGN.md), computed in this one place.
        `action` ("start" or "update": fetch the code first) and `install_only` (install, then
        exit instead of launching) describe one run; they are not settings."""
        owner = self.env_owner  # a satellite runs its parent's install: the parent's settings
        meta = owner.metadata() if owner is not self else self.metadata()
        variant = owner.torch_variant_resolved()
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
            # A home and caches in the data dir (a re-created container keeps the apps' settings and
            # downloads): ~/.config and friends in HOME; pip's, Hugging Face's, torch hub's caches
            # in XDG_CACHE_HOME (uv's is UV_CACHE_DIR below, in the same folder); model downloads by
            # name go to the shared models folder (HF_HUB_CACHE), the rest of Hugging Face's files
            # (tokens, datasets, xet) to HF_HOME. The caches' variables set for AiKore itself win.
            "HOME": str(settings.AIKORE_INSTANCE_HOME),
            "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(settings.CACHE_DIR),
            "HF_HOME": os.environ.get("HF_HOME") or str(settings.CACHE_DIR / "huggingface"),
            "HF_HUB_CACHE": os.environ.get("HF_HUB_CACHE") or str(settings.MODELS_DIR / "huggingface"),
            # Environments (blueprints/functions.sh): uv and its one shared cache, hard-linking
            # packages into each environment (same filesystem as instances/).
            "AIKORE_UV": str(settings.AIKORE_UV),
            "UV_CACHE_DIR": str(settings.UV_CACHE_DIR),
            "UV_LINK_MODE": "hardlink",
            "UV_PYTHON_INSTALL_DIR": str(settings.UV_PYTHON_INSTALL_DIR),
            "AIKORE_ENV_DIR": str(self.env_dir),
            "AIKORE_APP_DIR": str(self.app_dir),
            "AIKORE_INSTALL_STATUS": str(self.install_status_path),
            "AIKORE_INSTALL_RECORD": str(self.install_record_path),
            "AIKORE_PYTHON_VERSION": owner.python_version,
            "AIKORE_TORCH_VARIANT": variant,
            "AIKORE_TORCH_INDEX_URL": torchvariants.index_url(variant),
            "AIKORE_GIT_URL": meta.git_url if meta else "",
            "AIKORE_GIT_REF": owner.git_ref or (meta.git_ref if meta else ""),
            "AIKORE_ACTION": action,
            "AIKORE_INSTALL_ONLY": "1" if install_only else "",
        }
        if settings.AIKORE_APP_USER:
            env["TMPDIR"] = str(settings.APPS_TMP_DIR)
        if self.gpu_ids:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_ids
        if self.vnc_display is not None and self.desktop_kind():
            env["DISPLAY"] = f":{self.vnc_display}"
        if self.parent_id is not None:
            env["AIKORE_SATELLITE_OF"] = self.env_owner.slug
        if self.proxy_mode() == "strip":
            # Gradio builds its URLs from this; unmodified Gradio 3 and 6 apps then work under the
            # stripped prefix (APPS.md). The public ports and host names accept and strip the
            # prefix too, so the same value works there. Other apps ignore it.
            env["GRADIO_ROOT_PATH"] = self.url_path.rstrip("/")
        return env

    def install_state(self) -> dict | None:
        """What the blueprint last reported through aikore_step (install.json): {"phase":
        "installing"|"launching"|"done", "step", "current", "total"}; None when it reported
        nothing this run (the file is removed at every start) or wrote something unreadable."""
        try:
            with open_no_symlink(self.install_status_path) as fh:
                data = json.loads(fh.read(8192))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("phase") not in ("installing", "launching", "done"):
            return None
        step = data.get("step")
        state: dict = {"phase": data["phase"], "step": str(step)[:200] if step else "", "progress": None}
        current, total = data.get("current"), data.get("total")
        if isinstance(current, int) and isinstance(total, int) and total > 0:
            state["progress"] = max(0.0, min(1.0, current / total))
        return state

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
        shared_dir(self.directory)
        if script is None and not self.script_path.exists():
            bp = bp or get_blueprint(self.base_blueprint)
            script = bp.read_script()
        if script is not None:
            atomic_write(self.script_path, script, 0o755)

    def read_script(self) -> str:
        # The app may write its folder: never through a link it put there.
        with open_no_symlink(self.script_path) as fh:
            return fh.read().decode("utf-8", errors="replace")

    def write_script(self, text: str) -> None:
        atomic_write(self.script_path, text, 0o755)

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open_no_symlink(self.log_path) as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:  # missing, or not a plain file (an app's link)
            return ""

    def append_log(self, line: str) -> None:
        """AiKore's own notes in the instance log ([aikore] lines), e.g. restart decisions. Never
        raises: a state change must not depend on writing a note (a full disk, a removed directory)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            shared_dir(self.directory)
            with open_no_symlink(self.log_path, "ab") as fh:
                fh.write(f"[aikore {stamp}] {line}\n".encode())
        except OSError as exc:
            log.warning("could not write to %s (%s): %s", self.log_path, exc.strerror or exc, line)

    # --- state ----------------------------------------------------------------------------

    def set_status(self, status: str, **fields: object) -> None:
        """Persist a status change (plus any observed fields) and tell the websocket clients."""
        self.status = status
        self.status_changed_at = timezone.now()
        if status in (InstanceStatus.STOPPED, InstanceStatus.FAILED) and "public_port" not in fields:
            # A stopped instance gives its public port back (allocated again at its next start; a
            # crash restart keeps it, so the URL stays put while the app comes back).
            fields["public_port"] = None
        if status in (InstanceStatus.STOPPED, InstanceStatus.FAILED):
            # Its desktop's VNC port goes back too (instances/desktop.py): every process of the
            # instance has ended before it is called stopped or failed. The display number stays
            # the instance's, as its port does: its terminal (which outlives stops) keeps DISPLAY,
            # which must never point at another instance's desktop.
            fields.setdefault("vnc_port", None)
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

    ENV_FIELDS = ("python_version", "torch_variant", "git_ref")

    RESTART_FIELDS = ("name", "gpu_ids", "launch_args", "port", "output_path", "persistent_mode", *ENV_FIELDS)

    EDITABLE_FIELDS = ("name", "gpu_ids", "port", "autostart", "persistent_mode", "launch_args", "output_path",
                       "allowed_origins", *ENV_FIELDS)

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
            "allowed_origins": validators.validate_allowed_origins,
            "python_version": validators.validate_python_version,
            "torch_variant": validators.validate_torch_variant,
            "git_ref": validators.validate_git_ref,
        }
        clean: dict = {}
        errors: dict[str, list[str]] = {}
        for field, value in changes.items():
            try:
                if field in self.ENV_FIELDS and self.parent_id is not None and value != getattr(self, field):
                    raise ValidationError({field: [
                        f"A satellite runs the environment of {self.env_owner.name!r}: change {field} there."]})
                if field in checks:
                    clean[field] = checks[field](value)
                elif field in ("autostart", "persistent_mode"):
                    if not isinstance(value, bool):
                        raise ValidationError({field: [f"{field} must be true or false."]})
                    if field == "persistent_mode" and not value and self.desktop_kind() == "program":
                        raise ValidationError({field: ["This app is a desktop program: it runs on its desktop, "
                                                       "so persistent mode stays on."]})
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
        if candidate.slug != self.slug:
            busy = [s.name for s in self.satellites.all() if s.is_active or s.status == InstanceStatus.STOPPING]
            if busy:
                raise Conflict({"name": [f"Satellites run from this instance's directory ({', '.join(busy)}); "
                                         "stop them before renaming it."]})
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
        if "allowed_origins" in changed:
            lifecycle.proxy_settings_changed()  # nginx applies it live: no restart
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
        """A new instance with this one's launch script and settings, its own name and port, and
        a copy of its code checkout (the user's edits, custom nodes, saved workflows included).
        Its environment is not copied (virtualenvs hold absolute paths): the clone's first start
        builds its own from the shared uv cache, hard-linking what this one downloaded. A clone of
        a satellite is another satellite of the same parent."""
        copy = Instance.objects.create_instance(
            name=name,
            blueprint=self.base_blueprint,
            gpu_ids=self.gpu_ids,
            autostart=self.autostart,
            persistent_mode=self.persistent_mode,
            launch_args=self.launch_args,
            allowed_origins=self.allowed_origins,
            python_version=self.python_version,
            torch_variant=self.torch_variant,
            git_ref=self.git_ref,
            parent=self.parent,
            script=self.read_script() if self.script_path.exists() else None,
        )
        source = self.directory / APP_DIRNAME
        if self.parent_id is None and source.is_dir():
            try:
                shutil.copytree(source, copy.directory / APP_DIRNAME, symlinks=True)
            except (OSError, shutil.Error) as exc:
                copy.append_log(f"clone: could not copy the code of {self.name!r}: {exc}; the first start fetches it")
        return copy

    def user_files(self) -> list[str]:
        """Entries of the instance directory that AiKore did not write: the code checkout (with
        custom nodes, saved workflows, uploads) and whatever else the app or the user put there."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        return [n for n in names if n not in AIKORE_FILES and not n.startswith(("output.log", "desktop.log"))
                and not (n.startswith(".") and n.endswith(".tmp"))]  # atomic_write's temporary files

    def deletion_plan(self) -> dict:
        """Exactly what deleting this instance removes and keeps (the delete dialog and the API
        show it). Trash is the default when the directory holds the user's files."""
        user = self.user_files()
        removed = [{"path": str(self.directory / "launch.sh"), "what": "its launch script (launch.sh)"},
                   {"path": str(self.log_path), "what": "its log (output.log and rotated logs)"}]
        if self.parent_id is None and (self.directory / ENV_DIRNAME).exists():
            removed.append({"path": str(self.directory / ENV_DIRNAME),
                            "what": "its Python environment (rebuilt from the uv cache if needed; never trashed)"})
        for name in user:
            what = ("the code checkout, with your edits, custom nodes, saved workflows and uploads"
                    if name == APP_DIRNAME else "your file or folder")
            removed.append({"path": str(self.directory / name), "what": what})
        kept = [{"path": str(self.output_dir), "what": "its outputs"},
                {"path": str(settings.MODELS_DIR), "what": "the shared models"}]
        if self.parent_id is not None:
            kept.append({"path": str(self.env_owner.directory),
                         "what": f"the code and environment of its parent {self.env_owner.name!r}"})
        satellites = list(self.satellites.values_list("name", flat=True)) if self.pk else []
        return {
            "removed": removed,
            "kept": kept,
            "user_data": bool(user),
            "trash_default": bool(user),
            "trash_dir": str(settings.TRASH_DIR),
            "blocked_by_satellites": satellites,
        }

    def delete_everything(self, keep_files: bool | None = None) -> None:
        """Stop synchronously (the caller waits), remove the supervisord group, the row and the
        directory. keep_files=True moves the directory (all but the rebuildable environment) to
        trash/; None (the default) does so when it holds the user's files (deletion_plan)."""
        from aikore_site import events
        from instances import lifecycle
        from terminals import service as terminals

        satellites = list(self.satellites.values_list("name", flat=True))
        if satellites:
            raise Conflict({"instance": [f"{self.name!r} has satellites that run its code and environment "
                                         f"({', '.join(satellites)}); delete them first."]})
        if keep_files is None:
            keep_files = bool(self.user_files())
        lifecycle.halt(self, final=True)
        directory = self.directory
        pk = self.pk
        self.delete()
        events.publish(events.INSTANCES_GROUP, {"type": "instance.deleted", "id": pk})
        # Its terminal goes too: after the row's delete has committed, never inside the delete's
        # transaction (the supervisord calls and the wait for its shells would hold the database's
        # write lock for seconds).
        transaction.on_commit(partial(terminals.remove, pk))
        if directory.exists():
            if keep_files:
                # The environment is large and rebuilt from the cache in seconds: not worth trash.
                shutil.rmtree(directory / ENV_DIRNAME, ignore_errors=True)
                # Unique: two deletes of one name within a second must not meet (shutil.move would
                # put the second folder inside the first).
                trash = Path(settings.TRASH_DIR) / f"{self.slug}-{int(time.time())}-{secrets.token_hex(4)}"
                shutil.move(str(directory), str(trash))
            else:
                shutil.rmtree(directory, ignore_errors=True)

    # --- environment actions (instances/environments.py does the work in a Huey job) ---------

    def update_app(self) -> dict:
        """Fetch the code (the blueprint's git ref or this instance's) and install what changed.
        A running instance is stopped and started again. Returns {"job_id", "message", "restarts"}."""
        return self._env_action("update")

    def rebuild_env(self) -> dict:
        """Delete the environment and build it again (from the uv cache). A running instance is
        stopped and started again. Returns {"job_id", "message", "restarts"}."""
        return self._env_action("rebuild")

    def _env_action(self, action: str) -> dict:
        from instances import tasks

        self.check_env_action(action)
        self.require_supervisor()  # a rebuild would delete the environment, then fail to launch
        restarts = self.is_active or self.status == InstanceStatus.STOPPING
        verb = {"update": "Updating", "rebuild": "Rebuilding the environment of"}[action]
        if restarts:
            message = f"{verb} {self.name}: stopping it now, starting it again after the install."
        else:
            message = f"{verb} {self.name}: installing now; it stays stopped afterwards."
        job = getattr(tasks, f"{action}_instance")(self.pk)
        return {"job_id": job.id, "message": message, "restarts": restarts}

    def check_env_action(self, action: str) -> None:
        """Refuse update/rebuild where it would pull the code or environment from under
        something else (Conflict = HTTP 409)."""
        if self.parent_id is not None:
            raise Conflict({"instance": [f"{self.name!r} is a satellite: it runs the code and environment of "
                                         f"{self.env_owner.name!r}; {action} that instance instead."]})
        meta = self.metadata()
        if meta is None or not meta.installs:
            raise Conflict({"instance": [
                f"{self.name!r} runs a script that declares no install (no aikore.git, aikore.python or "
                f"aikore.torch in its header): there is nothing to {action}."]})
        busy = [s.name for s in self.satellites.all() if s.is_active or s.status == InstanceStatus.STOPPING]
        if busy:
            raise Conflict({"instance": [f"Satellites are running from this environment ({', '.join(busy)}); "
                                         f"stop them before the {action}."]})
