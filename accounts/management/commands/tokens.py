"""API tokens from the command line (the machine's own operator; see README "Roles"):

    manage.py tokens create --user NAME --name WHAT [--role viewer|operator|admin]
    manage.py tokens list
    manage.py tokens revoke ID
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import roles
from accounts.models import ApiToken


class Command(BaseCommand):
    help = "Create, list and revoke API tokens. A token's role is capped at its owner's, and checked at each use."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a token; its value is printed once.")
        create.add_argument("--user", required=True)
        create.add_argument("--name", required=True)
        create.add_argument("--role", choices=roles.ROLES, default=None, help="Default: the owner's role.")
        sub.add_parser("list", help="Tokens, newest first.")
        revoke = sub.add_parser("revoke", help="Revoke a token by id; its open streams close at once.")
        revoke.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
            try:
                token, raw = ApiToken.issue(user, options["name"][:100], options["role"])
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
            self.stderr.write(f"Token {token.pk} for {user} with the {token.role} role (shown once):")
            self.stdout.write(raw)
        elif action == "list":
            for token in ApiToken.objects.select_related("user"):
                state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
                self.stdout.write(f"{token.pk}\t{token.user}\t{token.role}\t{token.prefix}…\t{state}\t{token.name}")
        else:
            token = ApiToken.objects.filter(pk=options["id"]).first()
            if token is None:
                raise CommandError(f"No token {options['id']}.")
            if token.revoked_at is None:
                token.revoke()
            self.stdout.write(f"Token {token.pk} revoked.")
