"""The dashboard page. Everything on it is driven by the API (/api/) and the websockets (/ws/);
this view only hands the template who is signed in and which version runs."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from proxy.origins import client_config
from terminals.access import may_open_terminal


@login_required
@ensure_csrf_cookie  # the page's scripts send the token (from its meta tag) with their API writes
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/index.html", {
        "user": request.user,
        "version": settings.VERSION,
        "is_staff": request.user.is_staff,
        "origins_config": client_config(),  # where the apps are (static/aikore/origins.js)
        "may_open_terminal": may_open_terminal(request.user),
    })
