import os

from django.apps import AppConfig
from django.conf import settings


class InstancesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "instances"

    def ready(self) -> None:
        # AiKore's user may not read or signal the apps' user's processes: supervisord (root) does
        # it (aikore_site/procs.py). Root (start-up steps, tests) and a single user need no help.
        if settings.AIKORE_APP_USER and os.geteuid() != 0:
            from aikore_site import procs
            from instances.supervisor import ProcessHelper

            procs.use_helper(ProcessHelper())
