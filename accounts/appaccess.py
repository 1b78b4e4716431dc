"""App-access credentials: how a logged-in control-plane user gets into the app origins without
ever sending AiKore's session there.

1. issue_handoff(): the control plane (a logged-in session) creates a one-time code for one app
   origin; the browser carries it there in a URL (proxy/views.handoff).
2. redeem(): the app origin's /_aikore/redeem trades the code, once and within
   AIKORE_HANDOFF_SECONDS, for the app cookie: an HttpOnly random secret, hashed here, valid on the
   origins it was redeemed for. A browser that already holds a credential of the same session gets
   the new origin added to it (one cookie per browser, since cookies are shared across ports).
3. check(): nginx's auth_request on an app origin. Valid while the control-plane session lives and
   its user has a role (viewers may open apps, accounts/roles.py): logging out, the session's
   expiry or deletion, a password change, deactivating the user and taking their role all end it.
   The control plane never reads this cookie.

On port-based origins (same host as the control plane, other port) the browser also sends the
control-plane session cookie along: redeem() then requires it to be the session that issued the
code, so a code that leaked (an app's script watching its origin's URLs) cannot be redeemed in
another browser.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from accounts import roles
from accounts.models import AppAccess, AppHandoff
from aikore_site.dbcache import cached_until_db_changes

MAX_COOKIE_VALUES = 4  # duplicates planted by an app's script beyond this are ignored
SECRET_RE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def _plausible(raw: str) -> bool:
    return 20 <= len(raw) <= 100 and set(raw) <= SECRET_RE_CHARS


def cookie_values(request: HttpRequest, name: str) -> list[str]:
    """Every value of cookie `name` in the request, in order. Django's request.COOKIES keeps only the
    last of duplicates; a script on an app origin can plant duplicates (other path or domain), so
    the checks here look at all of them (bounded) and accept a valid one wherever it stands."""
    values: list[str] = []
    for chunk in request.META.get("HTTP_COOKIE", "").split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip())
            if len(values) >= MAX_COOKIE_VALUES:
                break
    return values


def is_port_origin(origin: str) -> bool:
    return origin == "apps" or origin.startswith("port:")


# --- 1. issue ---------------------------------------------------------------------------------


def issue_handoff(request: HttpRequest, origin: str) -> str | None:
    """A one-time code for `origin` (an id checked by proxy.origins), for the request's logged-in
    session; None without one (a Bearer token has no session to tie the credential to)."""
    user = getattr(request, "user", None)
    session_key = request.session.session_key if hasattr(request, "session") else None
    if user is None or not roles.can(user, roles.VIEWER) or not session_key:
        return None
    now = timezone.now()
    # Unredeemed codes are garbage after their time: sweep them here, where new ones are made.
    AppHandoff.objects.filter(created_at__lt=now - timedelta(seconds=settings.AIKORE_HANDOFF_SECONDS)).delete()
    code = secrets.token_urlsafe(32)
    AppHandoff.objects.create(code_hash=_hash(code), user=user, session_key=session_key, origin=origin,
                              created_at=now)
    return code


# --- 2. redeem --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    secret: str  # the cookie value to set
    max_age: int  # seconds, until the session's own expiry


def _live_session_expiry(session_key: str) -> datetime | None:
    return (Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now())
            .values_list("expire_date", flat=True).first())


def redeem(request: HttpRequest, code: str, origin: str) -> Grant | None:
    """Trade a hand-off code for the app credential of `origin`, or None (unknown, used, expired,
    for another origin, from another browser, or its session or user is gone)."""
    if not _plausible(code):
        return None
    now = timezone.now()
    with transaction.atomic():
        handoff = AppHandoff.objects.filter(code_hash=_hash(code)).select_related("user").first()
        if handoff is None:
            return None
        handoff.delete()  # one use, whatever happens next
    if handoff.origin != origin or handoff.created_at < now - timedelta(seconds=settings.AIKORE_HANDOFF_SECONDS):
        return None
    if is_port_origin(origin) and handoff.session_key not in cookie_values(request, settings.SESSION_COOKIE_NAME):
        return None
    user = handoff.user
    expiry = _live_session_expiry(handoff.session_key)
    if not roles.can(user, roles.VIEWER) or expiry is None:
        return None
    max_age = max(1, int((expiry - now).total_seconds()))
    # The same browser already holds a credential of this session: extend it to this origin.
    for value in cookie_values(request, settings.APP_COOKIE_NAME):
        if not _plausible(value):
            continue
        access = AppAccess.objects.filter(key_hash=_hash(value), session_key=handoff.session_key).first()
        if access is not None:
            origins = access.origins.split()
            if origin not in origins:
                access.origins = " ".join([*origins, origin])
                access.save(update_fields=["origins"])
            return Grant(value, max_age)
    secret = secrets.token_urlsafe(32)
    AppAccess.objects.create(key_hash=_hash(secret), user=user, session_key=handoff.session_key,
                             auth_hash=user.get_session_auth_hash(), origins=origin, expires_at=expiry)
    return Grant(secret, max_age)


# --- 3. check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Access:
    user_id: int
    origins: frozenset[str]
    expires_at: datetime
    session_expires_at: datetime | None
    auth_hash: str


@cached_until_db_changes
def _access(key_hash: str) -> _Access | None:
    # Exact cache: a logout, a session deleted or expired-and-cleared, a deactivated user or a
    # changed password are all writes, which end it. One query with the session's expiry.
    row = (AppAccess.objects.filter(key_hash=key_hash, user__is_active=True)
           .annotate(session_expiry=Subquery(Session.objects.filter(session_key=OuterRef("session_key"))
                                             .values("expire_date")[:1]))
           .values("user_id", "origins", "expires_at", "session_expiry", "auth_hash").first())
    if row is None:
        return None
    return _Access(row["user_id"], frozenset(row["origins"].split()), row["expires_at"], row["session_expiry"],
                   row["auth_hash"])


@cached_until_db_changes
def _current_auth_hash(user_id: int) -> str | None:
    """The user's session auth hash while they may open apps (active, with a role), else None."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not roles.can(user, roles.VIEWER):
        return None
    return user.get_session_auth_hash()


def check(request: HttpRequest, origin: str) -> int | None:
    """The id of the user whose app credential in this request is valid on `origin`, else None."""
    now = timezone.now()
    for value in cookie_values(request, settings.APP_COOKIE_NAME):
        if not _plausible(value):
            continue
        access = _access(_hash(value))
        if (access is None or origin not in access.origins or access.expires_at <= now
                or access.session_expires_at is None or access.session_expires_at <= now):
            continue
        if _current_auth_hash(access.user_id) != access.auth_hash:
            continue
        return access.user_id
    return None


def user_for(request: HttpRequest, origin: str):  # -> User | None
    user_id = check(request, origin)
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


# --- revocation -------------------------------------------------------------------------------


def revoke_session(session_key: str | None) -> int:
    """End every app credential and pending code of a control-plane session."""
    if not session_key:
        return 0
    AppHandoff.objects.filter(session_key=session_key).delete()
    return AppAccess.objects.filter(session_key=session_key).delete()[0]


@receiver(user_logged_out)
def _logged_out(sender: object, request: HttpRequest | None = None, **kwargs: object) -> None:
    # Called before the session is flushed: its key is still the one the credentials name.
    if request is not None and hasattr(request, "session"):
        revoke_session(request.session.session_key)
