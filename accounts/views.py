"""Login with a brake on password guessing, and a logout that only accepts POST."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

MAX_FAILURES = 5  # per (client address, user name) ...
MAX_FAILURES_PER_ADDRESS = 20  # ... and per client address, within:
WINDOW_SECONDS = 300


def _client_address(request: HttpRequest) -> str:
    # nginx sets X-Real-IP; daphne's --proxy-headers already maps X-Forwarded-For to REMOTE_ADDR.
    return request.META.get("HTTP_X_REAL_IP") or request.META.get("REMOTE_ADDR") or "unknown"


def _keys(request: HttpRequest) -> tuple[str, str]:
    address = _client_address(request)
    username = str(request.POST.get("username", ""))[:150].lower()
    return f"login-fail:{address}:{username}", f"login-fail:{address}"


class RateLimitedLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        pair_key, address_key = _keys(request)
        if cache.get(pair_key, 0) >= MAX_FAILURES or cache.get(address_key, 0) >= MAX_FAILURES_PER_ADDRESS:
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, "Too many failed attempts. Wait a few minutes, then try again.")
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        pair_key, address_key = _keys(self.request)
        for key in (pair_key, address_key):
            cache.add(key, 0, WINDOW_SECONDS)
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, WINDOW_SECONDS)
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        cache.delete(_keys(self.request)[0])
        return super().form_valid(form)
