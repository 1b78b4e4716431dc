"""nginx's auth_request target. It runs for every proxied instance request that nginx has not
answered from its short auth cache, so it does the least possible: the session (or Bearer token)
lookup that accounts.auth already does, no template, no body."""

from __future__ import annotations

import re
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from accounts.auth import authenticated_user

LOGIN_FOR_METHODS = ("GET", "HEAD")
LOGIN_BASE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}")


def login_redirect(request: HttpRequest) -> str:
    """Where nginx sends an anonymous browser: the login page, then back to what it asked for.
    Empty for scripts (a Bearer header, not a page load, a websocket handshake): they get the
    plain 401."""
    if (request.headers.get("Authorization") or request.headers.get("X-Original-Upgrade")
            or request.headers.get("X-Original-Method", "GET") not in LOGIN_FOR_METHODS):
        return ""
    original = request.headers.get("X-Original-URI", "/")
    if not original.startswith("/") or original.startswith("//"):
        original = "/"
    # nginx always sets this header (a client's own copy never gets through): "same" on the main
    # port, the main port's origin on an instance's public port.
    base = request.headers.get("X-AiKore-Login-Base", "")
    if not LOGIN_BASE.fullmatch(base):
        base = ""
    return f"{base}{settings.LOGIN_URL}?next={quote(original, safe='/')}"


def auth_check(request: HttpRequest) -> HttpResponse:
    if authenticated_user(request) is not None:
        return HttpResponse(status=200)
    response = HttpResponse(status=401)
    redirect = login_redirect(request)
    if redirect:
        response["X-AiKore-Login"] = redirect
    return response
