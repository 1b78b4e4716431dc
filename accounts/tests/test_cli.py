"""manage.py tokens / roles: the machine's operator issues tokens (capped at their owner's role)
and sets roles."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import roles
from accounts.auth import user_from_token
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_tokens_and_roles_from_the_command_line(bob, nobody) -> None:
    raw = run("tokens", "create", "--user", "bob", "--name", "backup", "--role", "admin").strip()
    token = ApiToken.objects.get(name="backup")
    assert token.role == roles.OPERATOR  # capped at bob's role
    assert roles.role_of(user_from_token(raw)) == roles.OPERATOR
    assert "backup" in run("tokens", "list")
    with pytest.raises(CommandError, match="no role"):
        run("tokens", "create", "--user", "nobody", "--name", "x")
    run("roles", "set", "nobody", "viewer")
    assert "nobody\tviewer" in run("roles", "list")
    run("tokens", "revoke", str(token.pk))
    assert user_from_token(raw) is None
