"""Who is making this request? One answer for the API, the pages, nginx's auth_request and
/metrics: a logged-in session, or a Bearer API token."""

from __future__ import annotations

import copy
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from django.utils import timezone

from accounts import roles
from accounts.models import ApiToken, hash_token
from aikore_site.dbcache import cached_until_db_changes


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@cached_until_db_changes
def _active_token(digest: str) -> ApiToken | None:
    # Exact cache: revoking a token or deactivating its user is a write, which ends it.
    return ApiToken.objects.active().select_related("user").filter(token_hash=digest).first()


def user_from_token(raw: str) -> AbstractBaseUser | None:
    if len(raw) > 200:
        return None
    token = _active_token(hash_token(raw))
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)  # throttled write
    # The cached token is shared by this thread's later requests: each gets its own user object
    # (backends cache permissions on it, views may set attributes). It acts with the token's role,
    # which roles.role_of() narrows again to the owner's current one.
    user = copy.copy(token.user)
    setattr(user, roles.TOKEN_ROLE_ATTR, token.role)
    setattr(user, roles.TOKEN_ID_ATTR, token.pk)
    return user


def authenticated_user(request: HttpRequest) -> AbstractBaseUser | None:
    """The session user if logged in, else the Bearer token's user, else None."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return user
    raw = bearer_token(request)
    if raw:
        token_user = user_from_token(raw)
        if token_user is not None:
            request.user = token_user
            return token_user
    if user is None:
        request.user = AnonymousUser()
    return None
