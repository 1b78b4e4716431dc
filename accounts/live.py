"""Live access: an open websocket ends when the access it was opened with ends.

Every AiKore websocket joins channel-layer groups for its user, its session (or its API token) and
one for everyone. What ends or narrows access sends a message there, from whichever process made
the change (aikore_site.events.publish: the in-memory layer through the web process's bridge, or
Redis):

- logout: "access.revoked" to the session's group: its streams close at once (code 4401);
- a deactivated or deleted user, a revoked or deleted token: "access.revoked" to its group;
- a user's groups, a group's permissions, a saved user (a password change), a token's role:
  "access.changed": each stream checks again whether its user (and token) may still watch it,
  and closes if not.

Messages are best effort (a full channel layer drops them) and some endings send none: a session
that expires, or one deleted from the store by `clearsessions` or by hand. So every stream also
checks again on its own every RECHECK_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.utils.crypto import constant_time_compare

from accounts import roles
from accounts.models import ApiToken
from aikore_site import events

log = logging.getLogger(__name__)

EVERYONE_GROUP = "aikore.access.all"
CLOSE_REVOKED = 4401  # the dashboard goes to the sign-in page on this code
CLOSE_FORBIDDEN = 4403
RECHECK_SECONDS = 60.0  # how often an open stream checks its access again by itself
REVOKED = {"type": "access.revoked"}
CHANGED = {"type": "access.changed"}


def user_group(user_id: int) -> str:
    return f"aikore.user.{int(user_id)}"


def session_group(session_key: str) -> str:
    # Session keys are credentials: the group (visible in Redis) is named by a digest.
    return "aikore.session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def token_group(token_id: int) -> str:
    return f"aikore.token.{int(token_id)}"


def _publish(group: str, message: dict) -> None:
    # After the change commits (at once outside a transaction): the streams check the database
    # again when they get this, and must see the new state. The admin's forms save inside a
    # transaction; told before its commit, a stream would see the old role and stay open.
    message = dict(message)
    transaction.on_commit(lambda: events.publish(group, message))


# --- what ends or changes access --------------------------------------------------------------


@receiver(user_logged_out)
def _on_logout(sender: object, request: Any = None, user: Any = None, **kwargs: object) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        _publish(session_group(session.session_key), REVOKED)


def _on_user_saved(sender: object, instance: Any, created: bool = False, update_fields: Any = None,
                   **kwargs: object) -> None:
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # a new account has no streams; signing in (last_login) changes no access
    _publish(user_group(instance.pk), CHANGED if instance.is_active else REVOKED)


def _on_user_deleted(sender: object, instance: Any, **kwargs: object) -> None:
    _publish(user_group(instance.pk), REVOKED)


def _on_groups_changed(sender: object, instance: Any, action: str, reverse: bool = False,
                       pk_set: set | None = None, **kwargs: object) -> None:
    if not action.startswith("post_"):
        return
    if isinstance(instance, Group) or reverse:
        _publish(EVERYONE_GROUP, CHANGED)  # a group's members or permissions: let everyone check
    else:
        _publish(user_group(instance.pk), CHANGED)


def _on_permissions_changed(sender: object, instance: Any, action: str, **kwargs: object) -> None:
    if action.startswith("post_"):
        _publish(EVERYONE_GROUP if isinstance(instance, Group) else user_group(instance.pk), CHANGED)


@receiver(post_save, sender=ApiToken)
def _on_token_saved(sender: object, instance: ApiToken, created: bool = False, **kwargs: object) -> None:
    if not created:
        _publish(token_group(instance.pk), REVOKED if instance.revoked_at else CHANGED)


@receiver(post_delete, sender=ApiToken)
def _on_token_deleted(sender: object, instance: ApiToken, **kwargs: object) -> None:
    _publish(token_group(instance.pk), REVOKED)


def connect_user_signals() -> None:
    User = get_user_model()
    post_save.connect(_on_user_saved, sender=User, dispatch_uid="aikore-live-user-saved")
    post_delete.connect(_on_user_deleted, sender=User, dispatch_uid="aikore-live-user-deleted")
    m2m_changed.connect(_on_groups_changed, sender=User.groups.through, dispatch_uid="aikore-live-groups")
    m2m_changed.connect(_on_permissions_changed, sender=User.user_permissions.through,
                        dispatch_uid="aikore-live-user-perms")
    m2m_changed.connect(_on_permissions_changed, sender=Group.permissions.through, dispatch_uid="aikore-live-group-perms")


# --- the consumers' side ------------------------------------------------------------------------


def access_groups(scope: dict) -> list[str]:
    user = scope["user"]
    groups = [EVERYONE_GROUP, user_group(user.pk)]
    token_id = getattr(user, roles.TOKEN_ID_ATTR, None)
    if token_id is not None:
        groups.append(token_group(token_id))
    else:
        session = scope.get("session")
        if session is not None and session.session_key:
            groups.append(session_group(session.session_key))
    return groups


def still_allowed(scope: dict, level: str) -> bool:
    """Whether the stream's user (and token) may still have it, from the database as it is now."""
    user = scope.get("user")
    current = get_user_model().objects.filter(pk=getattr(user, "pk", None), is_active=True).first()
    if current is None:
        return False
    token_id = getattr(user, roles.TOKEN_ID_ATTR, None)
    if token_id is not None:
        token = ApiToken.objects.active().filter(pk=token_id).first()
        if token is None:
            return False
        setattr(current, roles.TOKEN_ROLE_ATTR, token.role)
        setattr(current, roles.TOKEN_ID_ATTR, token.pk)
    else:
        # A password change ends the other sessions (Django's session auth hash), and their streams.
        session = scope.get("session")
        recorded = session.get(HASH_SESSION_KEY) if session is not None else None
        if recorded is not None and not constant_time_compare(recorded, current.get_session_auth_hash()):
            return False
        if session is not None and not _session_alive(session.session_key):
            return False
    return roles.can(current, level)


def _session_alive(session_key: str | None) -> bool:
    """Whether the store still has this session, unexpired (the scope holds what it had at the
    handshake). Loading an expired or deleted session gives nothing."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return bool(store.load())


class LiveAccessMixin:
    """For AsyncJsonWebsocketConsumer subclasses: `await self.admit()` first in connect() (False:
    refused, the handshake answered 403), `await self.leave_access_groups()` in disconnect()."""

    required_role = roles.VIEWER

    async def admit(self) -> bool:
        if not await database_sync_to_async(roles.ws_allowed)(self.scope, self.required_role):
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        self.access_group_names = access_groups(self.scope)
        for group in self.access_group_names:
            await self.channel_layer.group_add(group, self.channel_name)
        self.access_recheck = asyncio.ensure_future(self._recheck_access())
        return True

    async def leave_access_groups(self) -> None:
        recheck = getattr(self, "access_recheck", None)
        if recheck is not None and recheck is not asyncio.current_task():
            recheck.cancel()
        for group in getattr(self, "access_group_names", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _recheck_access(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(RECHECK_SECONDS)
                if not await database_sync_to_async(still_allowed)(self.scope, self.required_role):
                    await self.close(code=CLOSE_REVOKED)
                    return

    async def access_revoked(self, event: dict) -> None:
        await self.close(code=CLOSE_REVOKED)

    async def access_changed(self, event: dict) -> None:
        if not await database_sync_to_async(still_allowed)(self.scope, self.required_role):
            await self.close(code=CLOSE_REVOKED)
