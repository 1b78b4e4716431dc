"""One plain-dict view of an instance, shared by the CLI (--json), the API and the websockets."""

from __future__ import annotations

import json

from aikore_site.dbcache import cached_until_db_changes
from instances.models import Instance


def instance_summary(instance: Instance) -> dict:
    mode = instance.proxy_mode()
    desktop = instance.desktop_kind()
    origin, path = instance.app_location()
    owner = instance.env_owner  # a satellite shows the environment it runs: its parent's
    return {
        "id": instance.pk,
        "name": instance.name,
        "slug": instance.slug,
        "base_blueprint": instance.base_blueprint,
        "status": instance.status,
        "pid": instance.pid,
        "port": instance.port,
        "public_port": instance.public_port,
        "gpu_ids": instance.gpu_ids,
        "autostart": instance.autostart,
        "persistent_mode": instance.persistent_mode,
        "launch_args": instance.launch_args,
        "output_path": instance.output_path,
        "url": instance.url_path,
        "app_origin": origin,
        "app_path": path,
        "proxy_mode": mode,
        "desktop": desktop,
        "desktop_path": instance.desktop_path if desktop else "",
        "vnc_display": instance.vnc_display,
        "allowed_origins": instance.allowed_origins,
        "exit_code": instance.exit_code,
        "error_message": instance.error_message,
        "restart_count": instance.restart_count,
        "python_version": owner.python_version,
        "torch_variant": owner.torch_variant,
        "git_ref": owner.git_ref,
        "parent": instance.parent_id,
        "install_step": instance.install_step,
        "install_progress": instance.install_progress,
        "created_at": instance.created_at.isoformat() if instance.created_at else None,
        "updated_at": instance.updated_at.isoformat() if instance.updated_at else None,
        "status_changed_at": instance.status_changed_at.isoformat() if instance.status_changed_at else None,
    }


@cached_until_db_changes
def instance_list_json() -> bytes:
    """Every instance's summary as a JSON array: GET /api/instances, the hottest read (dashboards
    and scripts poll it). Rebuilt only after something was written to the database."""
    return json.dumps([instance_summary(i) for i in Instance.objects.select_related("parent")]).encode()
