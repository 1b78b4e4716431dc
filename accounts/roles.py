"""Who may do what: AiKore's three roles, and the one check every surface calls.

    viewer    see instances, logs, scripts, stats; open apps
    operator  + start, stop, restart (and update/rebuild)
    admin     + create, edit, delete, clone, scripts, launch args, blueprints, users, tokens, the admin site

A role is a Django group holding one permission (accounts.role_viewer / role_operator / role_admin,
created by accounts/migrations/0003_roles.py); a user has the highest role of their groups and
direct permissions; superusers are admins. An API token carries its owner's role or a narrower one
(ApiToken.role), checked again at each use against the owner's current role.

The surfaces, each checking in one place: the API (api_auth(level) per route; the NinjaAPI's
default is ADMIN, so a route that forgets to say is admin-only), websockets (ws_allowed), the admin
(AiKoreAdminSite.has_permission, and RoleBackend grants the admin role Django's model permissions),
pages (page_requires), the dashboard's template context (context), and app access
(accounts/appaccess.py: the viewer role opens apps). The CLI (manage.py) is the machine's own
operator and is not restricted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest, HttpResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from aikore_site.dbcache import cached_until_db_changes

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)  # from the narrowest to the widest
CHOICES = [(VIEWER, "Viewer"), (OPERATOR, "Operator"), (ADMIN, "Admin")]
RANK = {None: 0, VIEWER: 1, OPERATOR: 2, ADMIN: 3}
PERMISSION_CODENAMES = {role: f"role_{role}" for role in ROLES}
PERMISSIONS = {role: f"accounts.{codename}" for role, codename in PERMISSION_CODENAMES.items()}
GROUP_NAMES = {VIEWER: "viewer", OPERATOR: "operator", ADMIN: "admin"}
DESCRIPTIONS = {
    VIEWER: "See instances, logs, scripts and stats; open apps",
    OPERATOR: "Viewer, plus start, stop, restart, update and rebuild instances",
    ADMIN: "Operator, plus create, edit, delete and clone instances, scripts, launch args, blueprints, "
           "users and tokens",
}
# A token's user carries its token's role (accounts/auth.py sets it on a per-request copy).
TOKEN_ROLE_ATTR = "aikore_token_role"
TOKEN_ID_ATTR = "aikore_token_id"

def narrower(a: str | None, b: str | None) -> str | None:
    return a if RANK[a] <= RANK[b] else b


def own_role(user: Any) -> str | None:
    """The role of an account itself (its groups and permissions), ignoring any token."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    if getattr(user, "is_superuser", False):
        return ADMIN
    return _account_role(user.pk)


@cached_until_db_changes
def _account_role(user_id: int) -> str | None:
    # One query, cached until the database changes (a group or permission change is a write).
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    granted = set(Permission.objects.filter(Q(user=user_id) | Q(group__user=user_id),
                                            content_type__app_label="accounts",
                                            codename__in=PERMISSION_CODENAMES.values())
                  .values_list("codename", flat=True))
    for role in reversed(ROLES):
        if PERMISSION_CODENAMES[role] in granted:
            return role
    return None


def role_of(user: Any) -> str | None:
    """The role a request acts with: the account's, narrowed by the token it came with."""
    role = own_role(user)
    if role is not None and hasattr(user, TOKEN_ROLE_ATTR):
        role = narrower(role, getattr(user, TOKEN_ROLE_ATTR))
    return role


def can(user: Any, level: str) -> bool:
    return RANK[role_of(user)] >= RANK[level]


def context(user: Any) -> dict[str, object]:
    """What the dashboard's template needs to hide what this user may not do."""
    role = role_of(user)
    return {"role": role or "", "can_operate": RANK[role] >= RANK[OPERATOR], "can_admin": role == ADMIN}


class RoleBackend(ModelBackend):
    """Django's ModelBackend, plus: the admin role has every model permission (as a superuser does),
    so the admin site's own checks follow the role."""

    def has_perm(self, user_obj: Any, perm: str, obj: object = None) -> bool:
        if getattr(user_obj, "is_active", False) and role_of(user_obj) == ADMIN:
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if getattr(user_obj, "is_active", False) and role_of(user_obj) == ADMIN:
            return True
        return super().has_module_perms(user_obj, app_label)


def forbidden_message(user: Any, level: str) -> str:
    role = role_of(user)
    if role is None:
        return f"Your account has no role in AiKore; this needs the {level} role (ask an admin)."
    via = " (this token's role)" if hasattr(user, TOKEN_ROLE_ATTR) and RANK[own_role(user)] > RANK[role] else ""
    return f"This needs the {level} role; you have the {role} role{via}."


# --- the API (django-ninja): authentication and the role, in the auth of each route -------------


class TokenRole(HttpBearer):
    """Authorization: Bearer <token>; 403 when the token's (capped) role is below the route's."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level

    def authenticate(self, request: HttpRequest, token: str) -> object | None:
        from accounts.auth import user_from_token

        user = user_from_token(token)
        if user is None:
            return None
        request.user = user
        if not can(user, self.level):
            raise HttpError(403, forbidden_message(user, self.level))
        return user


class SessionRole(APIKeyCookie):
    """The dashboard's session (CSRF checked on writes by ninja); 403 below the route's role."""

    param_name: str = settings.SESSION_COOKIE_NAME

    def __init__(self, level: str) -> None:
        super().__init__(csrf=True)
        self.level = level

    def authenticate(self, request: HttpRequest, key: str | None) -> object | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_active:
            return None
        if not can(user, self.level):
            raise HttpError(403, forbidden_message(user, self.level))
        return user


def api_auth(level: str) -> list:
    """The `auth=` of an API route (or router) that needs `level`."""
    return [TokenRole(level), SessionRole(level)]


def route_level(auth: object) -> str | None:
    """The role an operation's auth list requires (None: no authentication), for tests and docs."""
    levels = {getattr(a, "level", None) for a in (auth or [])}
    levels.discard(None)
    return max(levels, key=lambda lv: RANK[lv]) if levels else None


# --- pages and websockets ---------------------------------------------------------------------


def page_requires(level: str) -> Callable:
    """A Django view for signed-in users with `level`: others go to the login page (anonymous) or
    get a 403 page saying which role it needs."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            from accounts.auth import authenticated_user

            user = authenticated_user(request)  # the session's, else a Bearer token's (e.g. openapi.json)
            if user is None:
                from django.contrib.auth.views import redirect_to_login

                return redirect_to_login(request.get_full_path())
            if not can(user, level):
                from django.shortcuts import render

                return render(request, "registration/forbidden.html",
                              {"message": forbidden_message(user, level)}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def ws_allowed(scope: dict, level: str) -> bool:
    return can(scope.get("user"), level)


# --- setting roles (the admin's user form does the same through groups) -------------------------


def ensure_groups() -> None:
    """The three role groups with their permission (the data migration made them; this repairs a
    database whose groups were deleted or flushed)."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType

    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="role")
    for role in ROLES:
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=PERMISSION_CODENAMES[role],
            defaults={"name": f"{role.title()}: {DESCRIPTIONS[role]}"[:255]})
        group, _ = Group.objects.get_or_create(name=GROUP_NAMES[role])
        group.permissions.add(permission)


def assign(user: Any, role: str | None) -> None:
    """Give `user` exactly `role` (None: no role), replacing any other role group."""
    from django.contrib.auth.models import Group

    ensure_groups()
    user.groups.remove(*Group.objects.filter(name__in=GROUP_NAMES.values()))
    if role is not None:
        user.groups.add(Group.objects.get(name=GROUP_NAMES[role]))
