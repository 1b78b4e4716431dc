"""Roles from the command line (the machine's own operator):

    manage.py roles list
    manage.py roles set USER viewer|operator|admin|none
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import roles


class Command(BaseCommand):
    help = "Show or set users' AiKore roles (viewer, operator, admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Every user with their role.")
        set_role = sub.add_parser("set", help="Give a user exactly one role, or none.")
        set_role.add_argument("user")
        set_role.add_argument("role", choices=[*roles.ROLES, "none"])

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if options["action"] == "list":
            for user in User.objects.order_by("username"):
                active = "" if user.is_active else "\t(inactive)"
                self.stdout.write(f"{user.get_username()}\t{roles.own_role(user) or 'none'}{active}")
            return
        user = User.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user {options['user']!r}.")
        if user.is_superuser:
            raise CommandError(f"{user} is a superuser, and so an admin whatever the groups say.")
        role = None if options["role"] == "none" else options["role"]
        roles.assign(user, role)
        self.stdout.write(f"{user}: {role or 'no role'}")
