"""Per-user API tokens for scripts (``Authorization: Bearer <token>``), stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "aik_"


def hash_token(raw: str) -> str:
    # Tokens are 32 random bytes: a fast hash is enough (no dictionary to attack), and the auth
    # check must stay well under a millisecond for nginx's auth_request.
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'backup script'.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: object, name: str) -> tuple[ApiToken, str]:
        """Create a token; the raw value is returned once and never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, token_hash=hash_token(raw), prefix=raw[:10])
        return token, raw

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


class AppHandoff(models.Model):
    """A pending hand-off: a one-time code that a logged-in control-plane session issues for one app
    origin, redeemed there within AIKORE_HANDOFF_SECONDS (accounts/appaccess.py). Only its hash is kept."""

    code_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, db_index=True)
    origin = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)


class AppAccess(models.Model):
    """A browser's credential on app origins (the HttpOnly app cookie; only its hash is kept). Valid on
    the origins it was redeemed for, while the control-plane session it came from lives."""

    key_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_key = models.CharField(max_length=40, db_index=True)
    # The user's session auth hash when issued: a password change ends it, as it ends sessions.
    auth_hash = models.CharField(max_length=128)
    origins = models.TextField(help_text="Space-separated origin ids: apps, port:<n>, host:<slug>.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "app access"
        verbose_name_plural = "app accesses"
