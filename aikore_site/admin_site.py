"""The admin site: open to the admin role (accounts/roles.py), not to Django's is_staff flag, so one
vocabulary decides who may use it. Inside, Django's model permissions apply as usual: the role
backend grants the admin role all of them."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from accounts import roles


class AiKoreAdminSite(admin.AdminSite):
    site_header = "AiKore administration"
    site_title = "AiKore admin"
    site_url = "/"

    def has_permission(self, request: HttpRequest) -> bool:
        return roles.can(request.user, roles.ADMIN)
