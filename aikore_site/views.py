"""The dashboard page. Everything on it is driven by the API (/api/) and the websockets (/ws/);
this view only hands the template who is signed in and which version runs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from accounts import roles
from proxy.origins import client_config
from terminals.access import may_open_terminal


@roles.page_requires(roles.VIEWER)
@ensure_csrf_cookie  # the page's scripts send the token (from its meta tag) with their API writes
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", {
        "user": request.user,
        "version": settings.VERSION,
        **roles.context(request.user),  # role, can_operate, can_admin: what the page offers
        "origins_config": client_config(),  # where the apps are (static/aikore/origins.js)
        "may_open_terminal": may_open_terminal(request.user),
    })
