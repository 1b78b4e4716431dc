"""Per-user API tokens for scripts (``Authorization: Bearer <token>``), stored hashed."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts import roles

TOKEN_PREFIX = "aik_"


class Role(models.Model):
    """No table: the anchor of AiKore's role permissions (accounts/roles.py), which the groups
    viewer, operator and admin hold."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [(roles.PERMISSION_CODENAMES[r], f"{r.title()}: {roles.DESCRIPTIONS[r]}") for r in roles.ROLES]


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
    role = models.CharField(max_length=16, choices=roles.CHOICES, default=roles.ADMIN,
                            help_text="What the token may do: at most its owner's role, checked at every use.")

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: object, name: str, role: str | None = None) -> tuple[ApiToken, str]:
        """Create a token with `role` (default: the owner's), capped at the owner's role; the raw
        value is returned once and never stored."""
        owner_role = roles.own_role(user)
        if owner_role is None:
            raise ValidationError({"user": [f"{user} has no role (viewer, operator or admin): give them one first."]})
        if role is not None and role not in roles.ROLES:
            raise ValidationError({"role": [f"Role must be one of {', '.join(roles.ROLES)}."]})
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, token_hash=hash_token(raw), prefix=raw[:10],
                                   role=roles.narrower(role or owner_role, owner_role))
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


class LoginAttempt(models.Model):
    """One sign-in attempt, kept AIKORE_LOGIN_RECORD_DAYS for the admin and read by the throttle
    (accounts/throttle.py)."""

    class Result(models.TextChoices):
        SUCCESS = "success", "success"
        FAILURE = "failure", "wrong password or user"
        DELAYED = "delayed", "refused: too soon after failures"
        SECOND_FACTOR_FAILED = "otp_failure", "wrong two-factor code"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    username = models.CharField(max_length=150, db_index=True)
    address = models.CharField(max_length=45, db_index=True, help_text="The client's address (see AIKORE_TRUSTED_PROXIES).")
    result = models.CharField(max_length=16, choices=Result.choices)
    # Whether the browser showed a valid device cookie for this user (it signed in before).
    trusted_device = models.BooleanField(default=False)
    device = models.CharField(max_length=32, blank=True, default="", db_index=True,
                              help_text="The device cookie's id, when one was shown.")
    user_agent = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["username", "at"]), models.Index(fields=["address", "at"])]

    def __str__(self) -> str:
        return f"{self.username or '?'} from {self.address}: {self.result}"
