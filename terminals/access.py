"""Who may open a shell in an instance's environment: the one check, used by the websocket and
the dashboard. A shell there can read every file AiKore can, so today only staff users may; the
accounts/roles work turns this into "admin"."""

from __future__ import annotations

from typing import Any


def may_open_terminal(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)
