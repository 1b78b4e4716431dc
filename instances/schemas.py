from __future__ import annotations

from django.conf import settings
from ninja import Schema
from pydantic import AliasChoices, Field

from instances import validators
from instances.blueprints import BLUEPRINT_ID_RE

# What the OpenAPI schema declares of the server's own rules (instances/validators.py), which still
# do the checking, so every refusal keeps its one wording.
NAME_SCHEMA = {"pattern": rf"^{validators.NAME_RE.pattern}$", "maxLength": validators.NAME_MAX, "minLength": 1}
BLUEPRINT_SCHEMA = {"pattern": rf"^{BLUEPRINT_ID_RE.pattern}$", "maxLength": 64}
PORT_SCHEMA = {"minimum": settings.AIKORE_INSTANCE_PORT_RANGE[0], "maximum": settings.AIKORE_INSTANCE_PORT_RANGE[1]}


class InstanceOut(Schema):
    id: int
    name: str
    slug: str
    base_blueprint: str
    status: str
    pid: int | None
    port: int | None
    public_port: int | None
    gpu_ids: str
    autostart: bool
    persistent_mode: bool
    launch_args: str
    output_path: str
    url: str
    app_origin: str = Field(..., description='Where the app is served: "apps" (the apps port), "port:<n>" '
                                              '(its public port) or "host:<slug>" (AIKORE_APPS_DOMAIN).')
    app_path: str = Field(..., description="The app's path on that origin.")
    proxy_mode: str = Field(..., description="strip, keep or origin (its blueprint's aikore.proxy).")
    desktop: str = Field("", description='"browser" (persistent mode: its app in a kiosk browser on a desktop of '
                         'its own), "program" (a desktop program on its desktop) or "" (no desktop).')
    desktop_path: str = Field("", description="The desktop's viewer (noVNC) on the app's origin, when it has one.")
    vnc_display: int | None = Field(None, description="While its desktop runs: its X display number.")
    allowed_origins: str
    exit_code: int | None
    error_message: str
    restart_count: int
    python_version: str = Field(description="Python version of its environment; empty = the one uv finds.")
    torch_variant: str = Field(description="auto, cpu or a CUDA/ROCm build (cu128, ...).")
    git_ref: str = Field(description="Branch, tag or commit overriding the blueprint's; empty = the blueprint's.")
    parent: int | None = Field(description="For a satellite: the instance whose code and environment it runs.")
    install_step: str = Field(description="While installing: the step the blueprint reports.")
    install_progress: float | None = Field(description="While installing: the step's progress, 0..1, when known.")
    created_at: str | None
    updated_at: str | None
    status_changed_at: str | None


class InstanceCreate(Schema):
    name: str = Field(..., description="Unique, user-facing name; its slug becomes the URL /instance/<slug>/.",
                      json_schema_extra=NAME_SCHEMA)
    # The same name the API returns; "blueprint" (the CLI's word) is accepted too.
    base_blueprint: str = Field(..., validation_alias=AliasChoices("base_blueprint", "blueprint"),
                                description="Blueprint id (file name without .sh), see /api/blueprints. "
                                            "Also accepted as `blueprint`.",
                                json_schema_extra=BLUEPRINT_SCHEMA)
    gpu_ids: str | list[int] = Field("", description='"0,1" or [0, 1]; empty = all GPUs.')
    autostart: bool = False
    persistent_mode: bool = False
    port: int | None = Field(None, description="Internal port; null = allocate automatically.",
                             json_schema_extra=PORT_SCHEMA)
    launch_args: str = ""
    output_path: str = Field("", description="Folder under outputs/; empty = the instance's slug.")
    allowed_origins: str | list[str] = Field("", description="Extra origins (scheme://host[:port]) whose pages "
                                                             "may open websockets to the app and send it writes.")
    python_version: str | None = Field(None, description="e.g. 3.12; null = the blueprint's (aikore.python).")
    torch_variant: str = Field("auto", description="auto (from the NVIDIA driver; CPU wheels without one), cpu, "
                               "or a build such as cu128, cu130, rocm6.4.")
    git_ref: str = Field("", description="Branch, tag or commit instead of the blueprint's aikore.git_ref.")
    parent: int | None = Field(None, description="Make a satellite of this instance: it runs the parent's code and "
                               "environment (blueprint, script, Python, torch and git ref are the parent's) with "
                               "its own name, port, GPUs, outputs and log.")


class InstancePatch(Schema):
    name: str | None = Field(None, json_schema_extra=NAME_SCHEMA)
    gpu_ids: str | list[int] | None = None
    autostart: bool | None = None
    persistent_mode: bool | None = None
    port: int | None = Field(None, json_schema_extra=PORT_SCHEMA)
    launch_args: str | None = None
    output_path: str | None = None
    allowed_origins: str | list[str] | None = None
    python_version: str | None = None
    torch_variant: str | None = None
    git_ref: str | None = None


class InstanceUpdateOut(Schema):
    instance: InstanceOut
    changed: list[str]
    restarted: bool
    message: str


class JobOut(Schema):
    job_id: str
    status: str
    instance: InstanceOut
    message: str = ""
    restarts: bool = Field(False, description="update/rebuild: the running instance is stopped and started again.")


class PathNote(Schema):
    path: str
    what: str


class DeletionPlanOut(Schema):
    removed: list[PathNote] = Field(description="Everything that goes (or goes to trash/ with keep_files).")
    kept: list[PathNote] = Field(description="What deleting never touches.")
    user_data: bool = Field(description="The instance directory holds the user's files (code checkout, uploads, "
                            "workflows, custom nodes, ...).")
    trash_default: bool = Field(description="Without keep_files, DELETE moves the directory to trash/.")
    trash_dir: str
    blocked_by_satellites: list[str] = Field(description="Satellites that must be deleted first (DELETE answers 409).")


class CloneIn(Schema):
    name: str = Field(..., json_schema_extra=NAME_SCHEMA)


class LogChunkOut(Schema):
    data: str
    offset: int
    next_offset: int
    size: int
    skipped: int


class ScriptIn(Schema):
    content: str


class ScriptOut(Schema):
    content: str
    size: int
    restarted: bool = False


class BlueprintOut(Schema):
    id: str
    name: str
    category: str
    description: str
    ready: str
    ready_path: str
    ready_timeout: int | None
    custom: bool
    kind: str = Field(description="app (offered for new instances), library (sourced by others) or test.")
    git_url: str
    git_ref: str
    python_version: str
    torch: bool
    proxy_mode: str = Field(description="strip (the /instance/<slug> prefix), keep it, or origin (a port of its own).")
    vram: str = Field(description="Rough GPU memory need as the blueprint states it, e.g. '12 GB (8 GB with --lowvram)', 'none'.")
    vram_gb: float | None = Field(description="The first number of vram in GB (0 for 'none'; null when not stated).")
    homepage: str = Field(description="The app's home page.")
    downloads: str = Field(description="What the app downloads at its first start (weights, tools), with sizes.")
    requires: str = Field(description="What the install needs besides Python (e.g. Node.js, .NET SDK, ffmpeg).")
    desktop: str = Field("", description="'program': the app is a desktop program, shown on the instance's desktop "
                         "(persistent mode implied); '': a web app.")
    problems: list[str] = Field(description="Header lines that were ignored, and why.")


class BlueprintDetailOut(BlueprintOut):
    script: str


class BlueprintSaveIn(Schema):
    instance_id: int
    name: str = Field(..., description="New blueprint id: letters, digits, '_', '-', '.'.")
    overwrite: bool = False


class ErrorOut(Schema):
    detail: str | list | dict
