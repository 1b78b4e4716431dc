"""/metrics for Prometheus (session or Bearer token)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts import roles
from accounts.auth import authenticated_user
from instances.models import Instance, InstanceStatus


def metrics(request: HttpRequest) -> HttpResponse:
    user = authenticated_user(request)
    if user is None:
        response = JsonResponse({"detail": "Authentication required (session or Bearer token)."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="aikore"'
        return response
    if not roles.can(user, roles.VIEWER):
        return JsonResponse({"detail": roles.forbidden_message(user, roles.VIEWER)}, status=403)
    from monitoring.metrics import render_prometheus
    from monitoring.sampler import get_sampler

    sampler = get_sampler()
    sample = sampler.latest() or sampler.sample()
    instances = [
        {"id": pk, "name": name, "slug": slug, "status": status, "running": status == InstanceStatus.RUNNING}
        for pk, name, slug, status in Instance.objects.values_list("pk", "name", "slug", "status")
    ]
    return HttpResponse(render_prometheus(sample, instances), content_type="text/plain; version=0.0.4; charset=utf-8")
