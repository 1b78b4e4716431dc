"""/api/system/*: ports, stats and GPUs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Router

from accounts import roles
from instances.models import Instance
from instances.ports import port_is_bindable, used_ports

router = Router(tags=["system"])
VIEW = roles.api_auth(roles.VIEWER)  # everything here is for the viewer role (accounts/roles.py)


@router.get("/system/ports", auth=VIEW)
def ports(request: HttpRequest, free_limit: int = 20) -> dict:
    """Internal ports: which instance holds which, and the next free ones."""
    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    used = [
        {"port": port, "instance_id": pk, "name": name}
        for pk, name, port in Instance.objects.exclude(port__isnull=True).values_list("pk", "name", "port")
    ]
    taken = used_ports()
    free: list[int] = []
    for port in range(low, high + 1):
        if len(free) >= max(0, min(free_limit, 1000)):
            break
        if port not in taken and port_is_bindable(port):
            free.append(port)
    return {"range": [low, high], "used": used, "free": free, "free_count": (high - low + 1) - len(taken)}


@router.get("/system/stats", auth=VIEW)
def stats(request: HttpRequest, history: float = 0) -> dict:
    """The latest sample; with ?history=<seconds> also the samples of that period (ring buffer)."""
    from monitoring.sampler import get_sampler

    sampler = get_sampler()
    latest = sampler.latest() or sampler.sample()
    result: dict = {"latest": latest, "interval": sampler.interval}
    if history > 0:
        result["history"] = sampler.history(min(history, 86400.0))
    return result


@router.get("/system/gpus", auth=VIEW)
def gpus(request: HttpRequest) -> dict:
    from monitoring.sampler import get_sampler

    sampler = get_sampler()
    gpu = (sampler.latest() or sampler.sample())["gpu"]
    return {
        "available": gpu["available"],
        "reason": gpu.get("reason"),
        "gpus": [{"index": g["index"], "name": g["name"], "memory_total": g.get("memory_total")} for g in gpu["gpus"]],
    }
