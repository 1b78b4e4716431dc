"""Internal port allocation. The unique constraint on each port field is the arbiter within a
field, so racing starts can never share a port; across fields (an app's port and another's desktop
VNC port come from the same range) a lock file serialises the choice. A bind test skips ports
something else on the machine holds."""

from __future__ import annotations

import socket
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from aikore_site.files import file_lock
from instances.models import Instance


class NoFreePort(RuntimeError):
    pass


def port_is_bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As web servers bind (SO_REUSEADDR): connections of the instance's previous run lingering
        # in TIME_WAIT must not make its own port look taken on restart.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def used_ports() -> set[int]:
    used: set[int] = set()
    for row in Instance.objects.values_list("port", "public_port", "vnc_port", "kiosk_port"):
        used.update(p for p in row if p)
    return used


def allocate_port(instance: Instance, field: str = "port", port_range: tuple[int, int] | None = None) -> int:
    """Give the instance a free port in the range (kept afterwards, so its URL and any per-port
    links stay stable across restarts)."""
    low, high = port_range or settings.AIKORE_INSTANCE_PORT_RANGE
    current = getattr(instance, field)
    if current:
        return current
    for _attempt in range(50):
        with file_lock(Path(settings.RUN_DIR) / "ports.lock"):
            used = used_ports()
            candidate = next((p for p in range(low, high + 1) if p not in used and port_is_bindable(p)), None)
            if candidate is None:
                raise NoFreePort(f"No free port left in {low}-{high}.")
            try:
                with transaction.atomic():
                    updated = Instance.objects.filter(pk=instance.pk, **{f"{field}__isnull": True}).update(
                        **{field: candidate}
                    )
            except IntegrityError:
                continue  # another instance took it between our read and write: try the next one
        instance.refresh_from_db(fields=[field])
        if updated or getattr(instance, field):
            return getattr(instance, field)
    raise NoFreePort("Could not allocate a port after 50 attempts.")


def port_report() -> dict:
    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    assigned = {
        port: {"instance": pk, "name": name}
        for pk, name, port in Instance.objects.exclude(port__isnull=True).values_list("pk", "name", "port")
    }
    return {"range": [low, high], "used": assigned}
