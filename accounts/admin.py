"""Users (with their role and two-factor devices), API tokens and the sign-in record in the admin,
which only the admin role reaches (aikore_site/admin_site.py)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import roles
from accounts.models import ApiToken, LoginAttempt

User = get_user_model()


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name", "role")

    def clean(self) -> dict:
        data = super().clean()
        user = data.get("user")
        if user is not None and not self.instance.pk and roles.own_role(user) is None:
            raise ValidationError(f"{user} has no role (viewer, operator or admin): give them one first.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ("name", "user", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at", "role")
    search_fields = ("name", "user__username", "prefix")
    fields = ("user", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke_selected",)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        if change:
            # A token never gets more than its owner has; ApiToken.issue caps new ones the same way.
            obj.role = roles.narrower(obj.role, roles.own_role(obj.user)) or roles.VIEWER
            obj.save()
            return
        token, raw = ApiToken.issue(obj.user, obj.name, obj.role)
        obj.pk, obj.token_hash, obj.prefix, obj.role = token.pk, token.token_hash, token.prefix, token.role
        self.message_user(
            request,
            f"Token created with the {token.role} role. Copy it now, it will not be shown again: {raw}",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected tokens")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()
        self.message_user(request, "Revoked.", messages.SUCCESS)


@admin.register(LoginAttempt)
class LoginAttemptAdmin(admin.ModelAdmin):
    """The sign-in record: read-only."""

    list_display = ("at", "username", "address", "result", "trusted_device", "user_agent")
    list_filter = ("result", "trusted_device")
    search_fields = ("username", "address")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class AiKoreUserAdmin(UserAdmin):
    """Django's user admin, with each user's AiKore role (their group) in the list, and a way to
    remove a user's two-factor device (a lost phone)."""

    list_display = ("username", "role", "is_active", "two_factor", "last_login")
    list_filter = ("is_active", "groups", "is_superuser")
    actions = ("reset_two_factor",)

    @admin.display(description="role")
    def role(self, user: object) -> str:
        return roles.own_role(user) or "—"

    @admin.display(description="two-factor", boolean=True)
    def two_factor(self, user: object) -> bool:
        return TOTPDevice.objects.filter(user=user, confirmed=True).exists()

    @admin.action(description="Remove two-factor devices (the user signs in with the password alone)")
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = TOTPDevice.objects.filter(user__in=queryset).delete()[0]
        self.message_user(request, f"Removed {count} two-factor device(s).", messages.SUCCESS)


# Groups are the roles: shown, but their permissions are AiKore's to define.
admin.site.unregister(Group)


@admin.register(Group)
class RoleGroupAdmin(admin.ModelAdmin):
    list_display = ("name",)
    readonly_fields = ("name", "permissions")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
