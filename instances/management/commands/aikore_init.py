"""Prepare the data dir for a start: private modes on AiKore's files, the first admin account and
its password."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts import roles
from aikore_site.files import make_private


class Command(BaseCommand):
    help = ("Make AiKore's files in the data dir private, and create (or update from AIKORE_ADMIN_PASSWORD) "
            "the first admin account. Idempotent.")

    def handle(self, *args: Any, **options: Any) -> None:
        for path in make_private(settings.AIKORE_DATA_DIR, shared=bool(settings.AIKORE_APP_USER)):
            self.stdout.write(f"made private: {path}")
        roles.ensure_groups()
        User = get_user_model()
        username = settings.AIKORE_ADMIN_USER
        password = os.environ.get("AIKORE_ADMIN_PASSWORD", "")
        password_file = settings.AIKORE_DATA_DIR / "admin_password"
        user = User.objects.filter(username=username).first()
        if password:
            if user is None:
                user = User.objects.create_superuser(username, "", password)
                self.stdout.write(self.style.SUCCESS(f"Created admin account {username!r} (password from AIKORE_ADMIN_PASSWORD)."))
            elif not user.check_password(password):
                user.set_password(password)
                user.is_staff = user.is_superuser = user.is_active = True
                user.save()
                self.stdout.write(self.style.SUCCESS(f"Updated the password of {username!r} from AIKORE_ADMIN_PASSWORD."))
            return
        if user is not None:
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username, "", password)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        bar = "=" * 64
        self.stdout.write(self.style.WARNING(
            f"{bar}\nAiKore admin account created\n  user:     {username}\n  password: {password}\n"
            f"  (kept in {password_file}, mode 0600)\n{bar}"
        ))
