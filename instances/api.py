"""/api/instances and /api/blueprints: thin endpoints over the Instance model's operations."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from accounts import roles
from aikore_site.files import atomic_write
from instances import blueprints, logs
from instances.models import ACTIVE_STATUSES, Instance, InstanceStatus
from instances.schemas import (
    BlueprintDetailOut,
    BlueprintOut,
    BlueprintSaveIn,
    CloneIn,
    DeletionPlanOut,
    ErrorOut,
    InstanceCreate,
    InstanceOut,
    InstancePatch,
    InstanceUpdateOut,
    JobOut,
    LogChunkOut,
    ScriptIn,
    ScriptOut,
)
from instances.serializers import instance_list_json, instance_summary

router = Router(tags=["instances"])
blueprint_router = Router(tags=["blueprints"])

# Who may call each route (accounts/roles.py); 401 without credentials, 403 below the role.
VIEW, OPERATE, ADMIN = (roles.api_auth(level) for level in (roles.VIEWER, roles.OPERATOR, roles.ADMIN))
AUTH_ERRORS = {401: ErrorOut, 403: ErrorOut}
ERRORS = {400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut, **AUTH_ERRORS}
MAX_LOG_CHUNK = 1024 * 1024


def get_instance(instance_id: int) -> Instance:
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        raise HttpError(404, f"Instance {instance_id} not found.")
    return instance


@router.get("/instances", response={200: list[InstanceOut], **AUTH_ERRORS}, auth=VIEW)
def list_instances(request: HttpRequest) -> HttpResponse:
    # instance_summary() builds exactly what InstanceOut documents; re-validating 50 rows field by
    # field through ninja tripled the cost, so the JSON is built (and cached) once, here.
    return HttpResponse(instance_list_json(), content_type="application/json")


@router.post("/instances", response={201: InstanceOut, **ERRORS}, auth=ADMIN)
def create_instance(request: HttpRequest, payload: InstanceCreate) -> Status:
    instance = Instance.objects.create_instance(
        name=payload.name,
        blueprint=payload.base_blueprint,
        gpu_ids=payload.gpu_ids,
        autostart=payload.autostart,
        persistent_mode=payload.persistent_mode,
        port=payload.port,
        launch_args=payload.launch_args,
        output_path=payload.output_path,
        allowed_origins=payload.allowed_origins,
        python_version=payload.python_version,
        torch_variant=payload.torch_variant,
        git_ref=payload.git_ref,
        parent=payload.parent,
    )
    return Status(201, instance_summary(instance))


@router.get("/instances/{int:instance_id}", response={200: InstanceOut, 404: ErrorOut, **AUTH_ERRORS}, auth=VIEW)
def get_one(request: HttpRequest, instance_id: int) -> dict:
    return instance_summary(get_instance(instance_id))


@router.patch("/instances/{int:instance_id}", response={200: InstanceUpdateOut, **ERRORS}, auth=ADMIN)
def update_instance(request: HttpRequest, instance_id: int, payload: InstancePatch) -> dict:
    instance = get_instance(instance_id)
    changes = payload.dict(exclude_unset=True)
    if "port" not in changes or changes["port"] is not None:
        changes = {k: v for k, v in changes.items() if v is not None}
    result = instance.update_settings(changes)
    instance.refresh_from_db()
    return {"instance": instance_summary(instance), **result}


@router.get("/instances/{int:instance_id}/deletion", response={200: DeletionPlanOut, 404: ErrorOut, **AUTH_ERRORS}, auth=ADMIN)
def deletion_plan(request: HttpRequest, instance_id: int) -> dict:
    """Exactly what DELETE /api/instances/{id} removes and keeps (the dashboard's delete dialog
    shows this)."""
    return get_instance(instance_id).deletion_plan()


@router.delete("/instances/{int:instance_id}", response={204: None, **ERRORS}, auth=ADMIN)
def delete_instance(request: HttpRequest, instance_id: int, keep_files: bool | None = None, stop: bool = True) -> Status:
    """Stop the instance and delete it: its row, supervisord group and directory
    (`$AIKORE_DATA_DIR/instances/<slug>/`: launch.sh, log, its Python environment, and the user's
    files there: the code checkout with local edits, custom nodes, saved workflows, uploads).
    Its outputs (`outputs/<output_path or slug>/`) and the shared models are never touched.
    keep_files=true moves the directory (all but the rebuildable environment) to `trash/`;
    keep_files=false deletes it; omitted, it goes to trash when it holds the user's files. GET
    /api/instances/{id}/deletion lists exactly what goes. 409 while satellites use its code and
    environment (delete them first), or while running with stop=false."""
    instance = get_instance(instance_id)
    if instance.status in (*ACTIVE_STATUSES, InstanceStatus.STOPPING) and not stop:
        raise HttpError(409, f"Instance {instance.name!r} is {instance.status}; stop it first or omit stop=false.")
    instance.delete_everything(keep_files=keep_files)
    return Status(204, None)


def _job(instance: Instance, action: str) -> Status:
    job_id = getattr(instance, action)()
    instance.refresh_from_db()
    return Status(202, {"job_id": job_id, "status": instance.status, "instance": instance_summary(instance)})


@router.post("/instances/{int:instance_id}/start", response={202: JobOut, 404: ErrorOut, **AUTH_ERRORS}, auth=OPERATE)
def start_instance(request: HttpRequest, instance_id: int) -> Status:
    return _job(get_instance(instance_id), "start")


@router.post("/instances/{int:instance_id}/stop", response={202: JobOut, 404: ErrorOut, **AUTH_ERRORS}, auth=OPERATE)
def stop_instance(request: HttpRequest, instance_id: int) -> Status:
    return _job(get_instance(instance_id), "stop")


@router.post("/instances/{int:instance_id}/restart", response={202: JobOut, 404: ErrorOut, **AUTH_ERRORS}, auth=OPERATE)
def restart_instance(request: HttpRequest, instance_id: int) -> Status:
    return _job(get_instance(instance_id), "restart")


@router.post("/instances/{int:instance_id}/clone", response={201: InstanceOut, **ERRORS}, auth=ADMIN)
def clone_instance(request: HttpRequest, instance_id: int, payload: CloneIn) -> Status:
    """An independent copy: settings, launch.sh and a copy of the code checkout; its environment
    is built at its first start from the shared uv cache (hard links, nothing downloaded again)."""
    return Status(201, instance_summary(get_instance(instance_id).clone(payload.name)))


def _env_job(instance: Instance, action: str) -> Status:
    result = getattr(instance, action)()
    instance.refresh_from_db()
    return Status(202, {"job_id": result["job_id"], "status": instance.status, "message": result["message"],
                        "restarts": result["restarts"], "instance": instance_summary(instance)})


@router.post("/instances/{int:instance_id}/update", response={202: JobOut, **ERRORS}, auth=OPERATE)
def update_instance_code(request: HttpRequest, instance_id: int) -> Status:
    """Fetch the code (the instance's git_ref, else the blueprint's) and install what changed.
    Local edits to tracked files are kept; when the new code would overwrite them the update stops,
    changes nothing and says so (status failed, error_message). A running instance is stopped and
    started again (`restarts`); a stopped one is installed and stays stopped. 409 for a satellite
    (update its parent) or while satellites run from this environment."""
    return _env_job(get_instance(instance_id), "update_app")


@router.post("/instances/{int:instance_id}/rebuild", response={202: JobOut, **ERRORS}, auth=OPERATE)
def rebuild_instance_env(request: HttpRequest, instance_id: int) -> Status:
    """Delete the instance's Python environment and build it again (packages come from the shared
    uv cache). The code checkout and the user's files are untouched. A running instance is stopped
    and started again (`restarts`). 409 for a satellite or while satellites run from it."""
    return _env_job(get_instance(instance_id), "rebuild_env")


class LogQuery(Schema):
    offset: int = Field(0, json_schema_extra={"minimum": -(2**62), "maximum": 2**62})
    limit: int = Field(65536, json_schema_extra={"minimum": 1, "maximum": MAX_LOG_CHUNK})


@router.get("/instances/{int:instance_id}/logs", response={200: LogChunkOut, **ERRORS}, auth=VIEW)
def read_logs(request: HttpRequest, instance_id: int, q: Query[LogQuery]) -> dict:
    """Bytes of the log from an absolute offset (negative: from the end). Follow a log by passing
    the returned next_offset back; offsets stay valid across log rotation."""
    instance = get_instance(instance_id)
    if q.limit < 1 or q.limit > MAX_LOG_CHUNK:
        raise HttpError(422, f"limit must be between 1 and {MAX_LOG_CHUNK}.")
    if abs(q.offset) > 2**62:
        raise HttpError(422, "offset out of range.")
    chunk = logs.read(instance.log_path, q.offset, q.limit)
    # Never split a UTF-8 character between two chunks: hold back an incomplete tail.
    data = chunk.data
    cut = len(data)
    if chunk.next_offset < chunk.end:
        while cut > 0 and cut > len(data) - 4 and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1
        if cut == 0:
            cut = len(data)
    return {
        "data": data[:cut].decode("utf-8", errors="replace"),
        "offset": chunk.offset,
        "next_offset": chunk.offset + cut,
        "size": chunk.end,
        "skipped": chunk.skipped,
    }


@router.get("/instances/{int:instance_id}/script", response={200: ScriptOut, 404: ErrorOut, **AUTH_ERRORS}, auth=VIEW)
def get_script(request: HttpRequest, instance_id: int) -> dict:
    instance = get_instance(instance_id)
    if not instance.script_path.exists():
        raise HttpError(404, "This instance has no launch.sh.")
    content = instance.read_script()
    return {"content": content, "size": len(content.encode())}


def validate_script(content: str) -> str:
    size = len(content.encode("utf-8", errors="replace"))
    if size > blueprints.MAX_SCRIPT_BYTES:
        raise HttpError(413, f"Script is too large ({size} bytes, at most {blueprints.MAX_SCRIPT_BYTES}).")
    if "\x00" in content:
        raise HttpError(422, "Script must be text: it contains NUL bytes.")
    bad = sum(1 for ch in content if ord(ch) < 32 and ch not in "\t\n\r\x1b\x0c")
    if bad:
        raise HttpError(422, f"Script must be text: it contains {bad} control characters.")
    return content.replace("\r\n", "\n")


@router.put("/instances/{int:instance_id}/script", response={200: ScriptOut, **ERRORS}, auth=ADMIN)
def put_script(request: HttpRequest, instance_id: int, payload: ScriptIn, restart: bool = False) -> dict:
    instance = get_instance(instance_id)
    content = validate_script(payload.content)
    instance.write_script(content)
    restarted = False
    if restart:
        instance.restart()
        restarted = True
    return {"content": content, "size": len(content.encode()), "restarted": restarted}


# --- blueprints -------------------------------------------------------------------------------


def _bp_dict(bp: blueprints.Blueprint) -> dict:
    data = bp.as_dict()
    data.pop("path")
    return data


@blueprint_router.get("/blueprints", response={200: list[BlueprintOut], 422: ErrorOut, **AUTH_ERRORS}, auth=VIEW)
def list_blueprints(request: HttpRequest, kind: str = "") -> list[dict]:
    """Every blueprint, or those of one kind (`?kind=app`: what new instances are made from; the
    dashboard offers only these)."""
    if kind and kind not in blueprints.KINDS:
        raise HttpError(422, f"kind must be one of {', '.join(blueprints.KINDS)}.")
    return [_bp_dict(bp) for bp in blueprints.list_blueprints() if not kind or bp.kind == kind]


@blueprint_router.get("/blueprints/{name}", response={200: BlueprintDetailOut, 404: ErrorOut, **AUTH_ERRORS}, auth=VIEW)
def get_blueprint(request: HttpRequest, name: str) -> dict:
    try:
        bp = blueprints.get_blueprint(name)
    except blueprints.BlueprintNotFound as exc:
        raise HttpError(404, str(exc)) from None
    return {**_bp_dict(bp), "script": bp.read_script()}


@blueprint_router.post("/blueprints", response={201: BlueprintOut, **ERRORS}, auth=ADMIN)
def save_blueprint(request: HttpRequest, payload: BlueprintSaveIn) -> Status:
    """Save an instance's launch.sh as a custom blueprint."""
    instance = get_instance(payload.instance_id)
    name = blueprints.normalise_id(payload.name)
    if not isinstance(name, str) or not blueprints.BLUEPRINT_ID_RE.fullmatch(name) or ".." in name:
        raise ValidationError({"name": ["Blueprint name may contain letters, digits, '_', '-' and '.' (max 64)."]})
    stock = settings.STOCK_BLUEPRINTS_DIR / f"{name}.sh"
    if stock.exists():
        raise HttpError(409, f"{name!r} is a stock blueprint; choose another name.")
    target = settings.CUSTOM_BLUEPRINTS_DIR / f"{name}.sh"
    if target.exists() and not payload.overwrite:
        raise HttpError(409, f"Custom blueprint {name!r} exists; pass overwrite=true to replace it.")
    content = validate_script(instance.read_script())
    if not re.search(r"^#\s*aikore\.name\s*:", content, re.M):
        content = f"# aikore.name: {name}\n" + content if not content.startswith("#!") else content.replace(
            "\n", f"\n# aikore.name: {name}\n", 1
        )
    atomic_write(target, content, 0o755)
    return Status(201, _bp_dict(blueprints.load_blueprint(target, custom=True)))
