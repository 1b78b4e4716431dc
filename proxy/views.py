"""The pages and checks around the app origins (DESIGN.md, Isolation).

On app origins (nginx routes these fixed paths to Django with X-AiKore-Origin set; the control
plane's nginx clears that header and refuses /_aikore/app/):
- app_auth: nginx's auth_request: is the app credential valid on this origin? Nothing else.
- app_signin: what an anonymous visitor of any app path gets (the same for every path): a page
  that sends the browser to the control plane's hand-off, which comes back with a credential.
- app_redeem: trades a one-time hand-off code for the HttpOnly app cookie.
- app_status: an instance that is not running, unknown, or served on another origin.

On the control plane:
- handoff: issues the one-time code for an app origin and sends the browser there.
- start_page: the Start action of the status page (the app origin accepts no control-plane writes).
- to_apps: /instance/<slug>/... on the main port moves to the same path on the apps port.
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts import appaccess, roles
from instances.models import ACTIVE_STATUSES, Instance, ServiceUnavailable
from proxy import origins

PAGE_METHODS = ("GET", "HEAD")


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    on_app_origin = origins.request_origin(request) is not None
    context = {"origins_config": origins.client_config(),
               "origins_js": "/_aikore/origins.js" if on_app_origin else f"{settings.STATIC_URL}aikore/origins.js",
               **context}
    return _no_store(render(request, template, context, status=status))


def can_start(user: object, instance: Instance) -> bool:
    """Who may start an instance from its status page: the operator role (accounts/roles.py)."""
    return roles.can(user, roles.OPERATOR)


# --- app origins ------------------------------------------------------------------------------


def app_auth(request: HttpRequest) -> HttpResponse:
    origin = origins.request_origin(request)
    if origin is not None and appaccess.check(request, origin) is not None:
        return HttpResponse(status=200)
    return HttpResponse(status=401)


def _is_page_load(request: HttpRequest) -> bool:
    return request.method in PAGE_METHODS and not request.headers.get("Upgrade")


# App-origin pages are framed by the dashboard's View pane (they hold no action of their own: a
# Start button leads to the control plane, whose pages refuse any frame but its own).
@xframe_options_exempt
@csrf_exempt  # nginx hands any refused request here, POSTs included; it only answers 401
def app_signin(request: HttpRequest) -> HttpResponse:
    origin = origins.request_origin(request)
    if origin is None or not _is_page_load(request):
        return _no_store(HttpResponse("Sign in to AiKore first.\n", status=401, content_type="text/plain"))
    return _page(request, "proxy/app_signin.html", {"origin": origin}, status=401)


@xframe_options_exempt
def app_redeem(request: HttpRequest) -> HttpResponse:
    origin = origins.request_origin(request)
    next_path = origins.safe_next(request.GET.get("next"))
    grant = appaccess.redeem(request, request.GET.get("code", ""), origin) if origin else None
    if grant is None:
        return _page(request, "proxy/app_redeem_failed.html", {"origin": origin or "apps", "next": next_path},
                     status=403)
    response = HttpResponseRedirect(next_path)
    response.set_cookie(settings.APP_COOKIE_NAME, grant.secret, max_age=grant.max_age, path="/",
                        httponly=True, samesite="Lax", secure=request.is_secure())
    return _no_store(response)


@xframe_options_exempt
def app_status(request: HttpRequest) -> HttpResponse:
    origin = origins.request_origin(request)
    user = appaccess.user_for(request, origin) if origin else None
    if user is None:
        return app_signin(request)
    original = origins.safe_next(request.headers.get("X-Original-URI"))
    slug = request.headers.get("X-AiKore-Instance") or origins.slug_from_path(original)
    instance = Instance.objects.filter(slug=slug).first() if slug else None
    context = {"origin": origin, "slug": slug or "", "instance": instance, "next": original}
    if instance is None:
        return _page(request, "proxy/app_status.html", context, status=404)
    app_origin, app_path = instance.app_location()
    moved = instance.status in ACTIVE_STATUSES and app_origin != origin
    rest = original[len(instance.url_path):] if original.startswith(instance.url_path) else ""
    context.update({
        "active": instance.status in ACTIVE_STATUSES,
        "can_start": can_start(user, instance) and not instance.is_active,
        "moved_to": app_origin if moved else "",
        "moved_path": app_path + rest if moved else "",
    })
    return _page(request, "proxy/app_status.html", context, status=503)


@xframe_options_exempt
def app_desktop(request: HttpRequest) -> HttpResponse:
    """The desktop viewer (noVNC) of an instance in persistent mode, on its app origin: nginx
    routes /instance/<slug>/desktop/ here after the app-access check, and the VNC stream to the one
    websockify (instances/desktop.py). A desktop that does not run gets the status page."""
    origin = origins.request_origin(request)
    user = appaccess.user_for(request, origin) if origin else None
    if user is None:
        return app_signin(request)
    original = origins.safe_next(request.headers.get("X-Original-URI"))
    slug = request.headers.get("X-AiKore-Instance") or origins.slug_from_path(original) or ""
    instance = Instance.objects.filter(slug=slug).first() if origins.SLUG_RE.fullmatch(slug) else None
    if instance is None or not instance.desktop_kind() or instance.vnc_display is None:
        return app_status(request)
    config = {
        "name": instance.name,
        "kind": instance.desktop_kind(),
        "websocket": f"{instance.desktop_path}websockify",
        "app_path": instance.url_path,
    }
    return _page(request, "proxy/desktop.html", {"origin": origin, "instance": instance, "config": config})


# --- control plane ----------------------------------------------------------------------------


@never_cache
@roles.page_requires(roles.VIEWER)  # viewers may open apps
def handoff(request: HttpRequest) -> HttpResponse:
    origin = origins.parse_origin(request.GET.get("to"))
    next_path = origins.safe_next(request.GET.get("next"))
    if origin is None:
        return _page(request, "proxy/handoff.html", {"error": "That app address is not one this AiKore serves."},
                     status=400)
    code = appaccess.issue_handoff(request, origin)
    if code is None:
        return _page(request, "proxy/handoff.html", {"error": "Sign in with a browser session to open apps."},
                     status=403)
    return _page(request, "proxy/handoff.html", {"origin": origin, "code": code, "next": next_path})


@never_cache
@roles.page_requires(roles.VIEWER)
@require_http_methods(["GET", "POST"])
def start_page(request: HttpRequest, slug: str) -> HttpResponse:
    instance = Instance.objects.filter(slug=slug).first()
    origin = origins.parse_origin(request.GET.get("to")) or "apps"
    next_path = origins.safe_next(request.GET.get("next"), f"/instance/{slug}/")
    if instance is None:
        return _page(request, "proxy/start.html", {"error": f"No instance named {slug!r}."}, status=404)
    if not can_start(request.user, instance):
        return _page(request, "proxy/start.html", {"error": "You may not start this instance."}, status=403)
    if request.method == "POST":
        if not instance.is_active:
            try:
                instance.start()
            except ServiceUnavailable as exc:
                return _page(request, "proxy/start.html", {"error": str(exc)}, status=503)
        return HttpResponseRedirect(f"/_aikore/handoff?to={quote(origin)}&next={quote(next_path, safe='/')}")
    return _page(request, "proxy/start.html", {"instance": instance, "origin": origin, "next": next_path})


@csrf_exempt  # any method on an old /instance/ link gets the same page; nothing is written
def to_apps(request: HttpRequest) -> HttpResponse:
    return _page(request, "proxy/to_apps.html", {})
