"""One plain-dict view of an instance, shared by the CLI (--json), the API and the websockets."""

from __future__ import annotations

from instances.models import Instance


def instance_summary(instance: Instance) -> dict:
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
        "exit_code": instance.exit_code,
        "error_message": instance.error_message,
        "restart_count": instance.restart_count,
        "created_at": instance.created_at.isoformat() if instance.created_at else None,
        "updated_at": instance.updated_at.isoformat() if instance.updated_at else None,
        "status_changed_at": instance.status_changed_at.isoformat() if instance.status_changed_at else None,
    }
