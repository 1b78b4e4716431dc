"""Who may open a shell in an instance's environment: the one check, behind the websocket (its
required role) and the dashboard's Terminal tab. A shell there can read every file AiKore can and
start anything, so it takes the admin role (accounts/roles.py)."""

from __future__ import annotations

from typing import Any

from accounts import roles

TERMINAL_ROLE = roles.ADMIN


def may_open_terminal(user: Any) -> bool:
    return roles.can(user, TERMINAL_ROLE)
