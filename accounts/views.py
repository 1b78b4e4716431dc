"""Sign-in: the password step behind the login throttle (accounts/throttle.py), the optional second
step (TOTP, django-otp), and the page where a user turns two-factor sign-in on or off."""

from __future__ import annotations

import time
from typing import Any

import segno
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.utils.safestring import mark_safe
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import throttle

PENDING_KEY = "aikore_pending_2fa"
PENDING_SECONDS = 300
Result = throttle.Result


def confirmed_device(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def _complete_login(request: HttpRequest, user: Any, backend: str, redirect_to: str, username: str,
                    verdict: throttle.Verdict) -> HttpResponse:
    auth_login(request, user, backend=backend)
    throttle.record(request, username, Result.SUCCESS, verdict)
    response = HttpResponseRedirect(redirect_to)
    throttle.set_device_cookie(request, response, username)
    return response


class ThrottledLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.username = throttle.normalise(request.POST.get("username"))
        self.verdict = throttle.check(request, self.username)
        if not self.verdict.allowed:
            throttle.record(request, self.username, Result.DELAYED, self.verdict)
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, f"Too many failed sign-ins for {self.verdict.reason}. "
                                 f"Try again in {self.verdict.retry_after} seconds.")
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            response["Retry-After"] = str(self.verdict.retry_after)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        throttle.record(self.request, self.username, Result.FAILURE, self.verdict)
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        backend = getattr(user, "backend", None) or "accounts.roles.RoleBackend"
        if confirmed_device(user) is not None:
            # The password was right; the session is signed in only after the second step.
            self.request.session[PENDING_KEY] = {
                "user": user.pk, "backend": backend, "at": time.time(), "next": self.get_success_url(),
                "username": self.username, "trusted": self.verdict.trusted_device, "device": self.verdict.device,
            }
            self.request.session.cycle_key()
            return HttpResponseRedirect("/login/verify/")
        return _complete_login(self.request, user, backend, self.get_success_url(), self.username, self.verdict)


class CodeForm(forms.Form):
    code = forms.CharField(max_length=10, label="Code from your authenticator app",
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                         "autofocus": True}))


@method_decorator([sensitive_post_parameters(), csrf_protect, never_cache], name="dispatch")
class VerifySecondFactorView(View):
    """The second sign-in step for accounts with a confirmed TOTP device."""

    def _pending(self, request: HttpRequest) -> tuple[dict, Any] | None:
        pending = request.session.get(PENDING_KEY)
        if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
            return None
        user = get_user_model().objects.filter(pk=pending.get("user"), is_active=True).first()
        return (pending, user) if user is not None else None

    def get(self, request: HttpRequest) -> HttpResponse:
        if self._pending(request) is None:
            return HttpResponseRedirect("/login/")
        return render(request, "registration/verify.html", {"form": CodeForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        found = self._pending(request)
        if found is None:
            return HttpResponseRedirect("/login/")
        pending, user = found
        form = CodeForm(request.POST)
        device = confirmed_device(user)
        verdict = throttle.Verdict(True, 0, bool(pending.get("trusted")), str(pending.get("device", "")))
        if device is None:  # removed meanwhile (an admin reset it): the password step suffices
            request.session.pop(PENDING_KEY, None)
            return _complete_login(request, user, pending["backend"], pending["next"], pending["username"], verdict)
        allowed, _info = device.verify_is_allowed()
        if form.is_valid() and allowed and device.verify_token(form.cleaned_data["code"].strip().replace(" ", "")):
            request.session.pop(PENDING_KEY, None)
            return _complete_login(request, user, pending["backend"], pending["next"], pending["username"], verdict)
        throttle.record(request, pending["username"], Result.SECOND_FACTOR_FAILED, verdict)
        message = "That code is not right." if allowed else "Too many wrong codes: wait a little, then try again."
        form = CodeForm({})  # an empty field for the next try, with the reason above it
        form.is_valid()
        form.errors.clear()
        form.add_error(None, message)
        return render(request, "registration/verify.html", {"form": form}, status=429 if not allowed else 200)


@never_cache
@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    """Turn two-factor sign-in (TOTP) on: scan the QR code, confirm with a code; or off, with a code."""
    user = request.user
    device = confirmed_device(user)
    form = CodeForm(request.POST or None)
    message = ""
    if device is not None:
        if request.method == "POST" and form.is_valid() and device.verify_token(form.cleaned_data["code"].strip()):
            TOTPDevice.objects.filter(user=user).delete()
            return HttpResponseRedirect("/account/two-factor/?off=1")
        if request.method == "POST":
            message = "That code is not right; two-factor sign-in stays on."
        return render(request, "registration/two_factor.html", {"enabled": True, "form": form, "message": message})
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if pending is None:
        pending = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    if request.method == "POST":
        if form.is_valid() and pending.verify_token(form.cleaned_data["code"].strip()):
            pending.confirmed = True
            pending.save(update_fields=["confirmed"])
            return HttpResponseRedirect("/account/two-factor/?on=1")
        message = "That code is not right. Check the time on your phone and try the current code."
    from base64 import b32encode

    qr = segno.make(pending.config_url, error="m")
    return render(request, "registration/two_factor.html", {
        "enabled": False, "form": form, "message": message,
        "qr_svg": mark_safe(qr.svg_inline(scale=5, dark="#111", light="#fff")),
        "secret": b32encode(pending.bin_key).decode(),
        "just_off": "off" in request.GET,
    })
