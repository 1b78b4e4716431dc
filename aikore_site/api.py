"""The one NinjaAPI object at /api/: authentication and a role for every route but /api/health
(accounts/roles.py: each route names the role it needs; one that does not is admin-only), JSON
errors {"detail": ...} with the right status for every failure, the docs (behind login, Swagger UI
from our own static files), and the routers of each app."""

from __future__ import annotations

import json
import logging
import xmlrpc.client

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from accounts import roles
from instances.models import ServiceUnavailable

log = logging.getLogger(__name__)


class LocalSwagger(Swagger):
    """Swagger UI from our own static files (npm swagger-ui-dist, bundled by
    scripts/build-frontend.sh), started by a script file rather than inline code (the CSP)."""

    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: object) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        return render(request, "api/docs.html", {"swagger_settings": json.dumps(self.settings), "api": api})


api = NinjaAPI(
    title="AiKore API",
    version=settings.VERSION,
    description="Launch, supervise, proxy and monitor AI WebUI instances. Authenticate with the "
    "dashboard's session (plus X-CSRFToken on writes) or `Authorization: Bearer <token>` "
    "(tokens are created in the admin).",
    docs_url="/docs",
    docs=LocalSwagger(),
    docs_decorator=roles.page_requires(roles.VIEWER),
    urls_namespace="api",
    # A route that does not name its role is admin-only (routes merged from elsewhere stay closed
    # until someone decides who may call them).
    auth=roles.api_auth(roles.ADMIN),
)


def _detail(request: HttpRequest, status: int, detail: object, **extra: object) -> HttpResponse:
    return api.create_response(request, {"detail": detail, **extra}, status=status)


@api.exception_handler(ValidationError)
def django_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    from instances.models import Conflict

    status = 409 if isinstance(exc, Conflict) else 422
    if hasattr(exc, "message_dict"):
        errors = exc.message_dict
        message = " ".join(f"{msgs[0]}" for msgs in errors.values())
        return _detail(request, status, message, errors=errors)
    return _detail(request, status, " ".join(exc.messages))


@api.exception_handler(NinjaValidationError)
def ninja_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for err in exc.errors:
        loc = [str(p) for p in err.get("loc", []) if p not in ("body", "payload", "query", "path", "q")]
        errors.setdefault(".".join(loc) or "request", []).append(str(err.get("msg", "invalid")))
    message = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
    return _detail(request, 422, message or "Invalid request.", errors=errors)


@api.exception_handler(RequestDataTooBig)
def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _detail(request, 413, f"Request body too large (limit {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes).")


@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _detail(request, 401, "Authentication required: log in or send Authorization: Bearer <token>.")


@api.exception_handler(ServiceUnavailable)
def service_unavailable(request: HttpRequest, exc: ServiceUnavailable) -> HttpResponse:
    return _detail(request, 503, str(exc))


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _detail(request, exc.status_code, str(exc))


@api.exception_handler(Exception)
def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Last resort: never a traceback to the client. Supervisor/DB outages are 503, not bugs.
    if isinstance(exc, (OSError, xmlrpc.client.Fault, DatabaseError)):
        log.warning("service unavailable on %s: %r", request.path, exc)
        return _detail(request, 503, f"A backend service is unavailable: {exc.__class__.__name__}.")
    if isinstance(exc, (ValueError, TypeError, UnicodeError)):
        log.warning("bad input on %s: %r", request.path, exc)
        return _detail(request, 400, "Bad request.")
    log.exception("unhandled error on %s", request.path)
    return _detail(request, 500, "Internal error; see the AiKore log.")


@api.get("/health", auth=None, tags=["system"])
def health(request: HttpRequest) -> dict:
    """Each of AiKore's parts (web, worker, watcher, nginx serving the current configuration,
    supervisord, database, free disk): `status` is "degraded", with `codes`, whenever one is not
    right. No authentication: anonymous callers get the booleans and codes; signed-in users (a
    session or a token, any role) also the `reasons`, the version, the configuration generations
    and the free space. Never waits."""
    from accounts.auth import authenticated_user
    from aikore_site import health as checks

    return checks.check(detail=roles.can(authenticated_user(request), roles.VIEWER))


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Anything under /api/ that no route matches (e.g. /api/instances/null): JSON, not a page."""
    return JsonResponse({"detail": f"No API route {request.path!r}; see /api/docs."}, status=404)


def _mount() -> None:
    from instances.api import blueprint_router
    from instances.api import router as instance_router
    from monitoring.api import router as monitoring_router
    from notifications.api import router as notifications_router

    api.add_router("", instance_router)
    api.add_router("", blueprint_router)
    api.add_router("", monitoring_router)
    api.add_router("", notifications_router)


_mount()
