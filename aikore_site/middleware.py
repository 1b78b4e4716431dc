"""One daphne serves the control plane and the few Django pages of the app origins. nginx tells
them apart (X-AiKore-Origin: set on app origins, cleared on the control plane) and routes only
fixed paths from an app origin to Django; this guard holds the same line inside Django, so no
route change in nginx can ever expose the dashboard, the API or the admin on an app origin, or
an app-origin page on the control plane."""

from __future__ import annotations

from collections.abc import Callable

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
