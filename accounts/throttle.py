"""Slowing down password guessing without locking the owner out (OWASP, "Slow Down Online Guessing
Attacks with Device Cookies").

- A browser that signed in to an account before holds a signed *device cookie* naming that account.
  It is let through while guessing against the account goes on elsewhere, unless that very cookie
  has failed DEVICE_MAX_FAILURES times in the window (a stolen cookie buys nothing).
- Every other attempt is an untrusted one. Failures of untrusted attempts, per account (whatever
  the address: rotating X-Real-IP or X-Forwarded-For buys nothing) and per client address, earn
  increasing delays: none for the first few, then 1, 2, 4 ... seconds up to a cap after the last
  failure. An attempt inside a delay is answered at once with 429 and Retry-After, without checking
  the password: no thread sleeps and no attempt is spent.
- The client address is the one nginx vouches for (REMOTE_ADDR, from nginx's X-Forwarded-For,
  which is the TCP peer unless that peer is one of AIKORE_TRUSTED_PROXIES).

Every attempt is recorded (LoginAttempt, visible in the admin) and the delays are computed from
those records, so they hold across restarts and processes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.models import LoginAttempt

WINDOW = timedelta(minutes=15)
DEVICE_MAX_FAILURES = 5  # failures of one device cookie in WINDOW before it counts as untrusted
ADDRESS_MAX_DELAY = 300
DEVICE_SALT = "aikore.accounts.device-cookie"
MAX_DEVICE_ENTRIES = 4  # accounts remembered per browser
MAX_RECORDS = 100_000
Result = LoginAttempt.Result


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds; 0 when allowed
    trusted_device: bool
    device: str  # the device cookie's id for this account, "" if none
    reason: str = ""


def normalise(username: object) -> str:
    return str(username or "").strip().lower()[:150]


def client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:45]


def delay_for(failures: int, free: int, cap: int) -> int:
    """Seconds to wait after the last of `failures`: 0 for the first `free`, then 1, 2, 4 ... cap."""
    if failures < free:
        return 0
    return min(2 ** min(failures - free, 30), cap)


# --- the device cookie ------------------------------------------------------------------------


def _device_entries(request: HttpRequest) -> list[list[str]]:
    raw = request.COOKIES.get(settings.DEVICE_COOKIE_NAME, "")
    if not raw or len(raw) > 2000:
        return []
    try:
        data = signing.loads(raw, salt=DEVICE_SALT, max_age=settings.DEVICE_COOKIE_DAYS * 86400)
    except signing.BadSignature:
        return []
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)]


def device_for(request: HttpRequest, username: str) -> str:
    """The id of this browser's device cookie for `username`, or ""."""
    for user, device in _device_entries(request):
        if user == username:
            return device
    return ""


def set_device_cookie(request: HttpRequest, response: HttpResponse, username: str) -> str:
    """After a successful sign-in: (re)issue this browser's device cookie for `username`."""
    device = secrets.token_hex(16)
    entries = [[username, device]] + [e for e in _device_entries(request) if e[0] != username]
    value = signing.dumps(entries[:MAX_DEVICE_ENTRIES], salt=DEVICE_SALT, compress=True)
    response.set_cookie(settings.DEVICE_COOKIE_NAME, value, max_age=settings.DEVICE_COOKIE_DAYS * 86400,
                        path="/", httponly=True, samesite="Lax", secure=settings.AIKORE_SECURE_COOKIES)
    return device


# --- the verdict ------------------------------------------------------------------------------


def _wait(stats: dict, free: int, cap: int, now: datetime) -> int:
    last = stats["last"]
    delay = delay_for(stats["n"], free, cap)
    if not delay or last is None:
        return 0
    remaining = (last + timedelta(seconds=delay) - now).total_seconds()
    return max(0, int(remaining + 0.999))


def check(request: HttpRequest, username: str) -> Verdict:
    """May this attempt go ahead (the password be checked)?"""
    now = timezone.now()
    since = now - WINDOW
    failures = LoginAttempt.objects.filter(result=Result.FAILURE, at__gte=since)
    device = device_for(request, username)
    if device:
        if failures.filter(device=device).count() < DEVICE_MAX_FAILURES:
            return Verdict(True, 0, True, device)
    untrusted = failures.filter(trusted_device=False)
    address = client_address(request)
    account = untrusted.filter(username=username).aggregate(n=Count("id"), last=Max("at"))
    by_address = untrusted.filter(address=address).aggregate(n=Count("id"), last=Max("at"))
    account_wait = _wait(account, settings.AIKORE_LOGIN_FREE_FAILURES, settings.AIKORE_LOGIN_MAX_DELAY, now)
    address_wait = _wait(by_address, settings.AIKORE_LOGIN_ADDRESS_FREE_FAILURES, ADDRESS_MAX_DELAY, now)
    wait = max(account_wait, address_wait)
    if wait:
        reason = "this account" if account_wait >= address_wait else "this address"
        return Verdict(False, wait, False, device, reason)
    return Verdict(True, 0, False, device)


def record(request: HttpRequest, username: str, result: str, verdict: Verdict) -> None:
    attempt = LoginAttempt.objects.create(
        username=username, address=client_address(request), result=result,
        # A device cookie that has failed too often is recorded as untrusted, as it was treated.
        trusted_device=verdict.trusted_device, device=verdict.device,
        user_agent=str(request.headers.get("User-Agent", ""))[:200])
    if attempt.pk % 100 == 0:
        # Now and then, forget what is older than the record's retention, and bound it in rows too
        # (a flood of refused attempts is recorded, but can't grow the database without end).
        LoginAttempt.objects.filter(at__lt=timezone.now() - timedelta(days=settings.AIKORE_LOGIN_RECORD_DAYS)).delete()
        LoginAttempt.objects.filter(pk__lte=attempt.pk - MAX_RECORDS).delete()

