"""Request guards and security headers.

OriginGuard: one daphne serves the control plane and the few Django pages of the app origins. nginx tells
them apart (X-AiKore-Origin: set on app origins, cleared on the control plane) and routes only
fixed paths from an app origin to Django; this guard holds the same line inside Django, so no
route change in nginx can ever expose the dashboard, the API or the admin on an app origin, or
an app-origin page on the control plane."""

from __future__ import annotations

from collections.abc import Callable

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

APP_PREFIX = "/_aikore/app/"


class OriginGuard:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        on_app_origin = "HTTP_X_AIKORE_ORIGIN" in request.META
        if on_app_origin != request.path_info.startswith(APP_PREFIX):
            return HttpResponseNotFound("Not found.\n", content_type="text/plain")
        return self.get_response(request)


class SecurityHeaders(CSPMiddleware):
    """The Content-Security-Policy of settings.CONTENT_SECURITY_POLICY (django-csp: a nonce per page
    for its few inline scripts), and a Permissions-Policy. Control-plane pages may be framed only by
    the control plane; AiKore's pages on app origins (sign-in, status) only by the dashboard, whose
    View tab shows them."""

    def get_policy_parts(self, request: HttpRequest, response: HttpResponse, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and "HTTP_X_AIKORE_ORIGIN" in request.META:
            from proxy.origins import control_plane_sources

            parts.replace = {**(parts.replace or {}), "frame-ancestors": control_plane_sources()}
        return parts

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # Only documents need these: the JSON API, nginx's auth checks (empty answers) and files
        # are served without the cost of building a policy on every request.
        if (not response.get("Content-Type", "").startswith("text/html") or response.streaming
                or not response.content):
            return response
        response = super().process_response(request, response)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
