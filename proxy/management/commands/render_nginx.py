"""Write $AIKORE_DATA_DIR/nginx/nginx.conf from the database (docker/entry.sh runs it before
supervisord starts nginx; later changes go through the regenerate_nginx job)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from proxy import nginx


class Command(BaseCommand):
    help = "Render the nginx config, test it with nginx -t and install it (reloads a running nginx)."

    def handle(self, *args: Any, **options: Any) -> None:
        result = nginx.regenerate()
        if not result.ok:
            if not nginx.config_path().exists():
                raise CommandError(result.error)
            # Start with the last good config rather than not at all.
            self.stderr.write(result.error)
        if options["verbosity"] > 1:
            state = "unchanged" if not result.changed else ("reloaded" if result.reloaded else "written")
            self.stdout.write(f"{nginx.config_path()}: {state} ({result.duration_ms:.1f} ms)")
