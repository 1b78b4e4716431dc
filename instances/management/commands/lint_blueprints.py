"""Lint blueprints (stock and custom, or those named): what `make test` checks on every blueprint."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from instances import blueprintlint, blueprints


class Command(BaseCommand):
    help = ("Check blueprints: bash -n, ShellCheck, header keys and values, no eval, no listening on every "
            "interface, no recursive rm outside the instance's folders. Exit status 1 when one fails.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", help="blueprint ids (default: every stock and custom blueprint)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            chosen = ([blueprints.get_blueprint(n) for n in options["names"]] if options["names"]
                      else blueprints.list_blueprints())
        except blueprints.BlueprintNotFound as exc:
            raise CommandError(str(exc)) from None
        failed = 0
        for bp in chosen:
            problems = blueprintlint.lint_file(bp.path)
            if problems:
                failed += 1
                self.stdout.write(self.style.ERROR(f"{bp.id} ({bp.path}):"))
                for problem in problems:
                    self.stdout.write(f"  {problem}")
            else:
                self.stdout.write(self.style.SUCCESS(f"{bp.id}: ok"))
        if failed:
            raise CommandError(f"{failed} of {len(chosen)} blueprints have problems.")
