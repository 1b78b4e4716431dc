"""`python manage.py stack prepare|cleanup|shutdown`: the steps docker/entry.sh runs around
supervisord (not meant to be typed by hand, though they are safe to)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from aikore_site import disk, privileges
from aikore_site.files import atomic_write, empty_dir
from instances import lifecycle


class Command(BaseCommand):
    help = "Start-up and shutdown steps of the AiKore stack (run by docker/entry.sh)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("prepare", help="Before supervisord starts: migrate, end what a previous run left, "
                                       "create the admin account, collect static files, render nginx's config.")
        sub.add_parser("cleanup", help="End what a previous run of this stack left (its supervisord died).")
        sub.add_parser("shutdown", help="Stop every instance at once, then supervisord and AiKore's programs.")

    def handle(self, *args: Any, **opts: Any) -> None:
        getattr(self, f"do_{opts['action']}")()

    def _cleanup(self) -> None:
        for note in lifecycle.prepare_start():
            self.stderr.write(f"AiKore: {note}")
        if settings.AIKORE_APP_USER:
            empty_dir(settings.APPS_TMP_DIR)  # no app runs now (prepare_start ended any left over)
        disk.keep_reserve()
        # entry.sh exports these to supervisord: every process of the stack carries the marker,
        # and supervisord's log writer knows AiKore's disk reserve.
        atomic_write(Path(settings.RUN_DIR) / "stack.env",
                     f"AIKORE_STACK_ID={settings.AIKORE_STACK_ID}\n"
                     f"AIKORE_DISK_RESERVE_BYTES={disk.reserve_bytes()}\n")

    def _own(self) -> None:
        """Started as root with an apps' user (docker/entry.sh runs these steps as root): what they
        created belongs to AiKore's user (aikore_site/privileges.py)."""
        if os.geteuid() == 0 and settings.AIKORE_APP_USER:
            users = privileges.lookup(settings.AIKORE_USER, settings.AIKORE_APP_USER)
            for note in privileges.fix_ownership(settings.AIKORE_DATA_DIR, users):
                self.stderr.write(f"AiKore: {note}")

    def do_prepare(self) -> None:
        # One Python start-up for all of these (each manage.py run costs about a second).
        call_command("migrate", interactive=False, verbosity=0)
        self._cleanup()
        call_command("aikore_init")
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("render_nginx")
        self._own()

    def do_cleanup(self) -> None:
        self._cleanup()
        self._own()

    def do_shutdown(self) -> None:
        for note in lifecycle.shutdown_stack():
            sys.stderr.write(f"AiKore: {note}\n")
