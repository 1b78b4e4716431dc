from django.contrib.admin.apps import AdminConfig


class AiKoreAdminConfig(AdminConfig):
    """The Django admin with AiKore's site: only the admin role gets in (accounts/roles.py)."""

    default_site = "aikore_site.admin_site.AiKoreAdminSite"
