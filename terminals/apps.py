from django.apps import AppConfig
from django.db.models.signals import post_delete


class TerminalsConfig(AppConfig):
    name = "terminals"
    verbose_name = "Terminals"

    def ready(self) -> None:
        from instances.models import Instance

        post_delete.connect(_instance_deleted, sender=Instance, dispatch_uid="terminals.instance_deleted")


def _instance_deleted(sender: object, instance: object, **kwargs: object) -> None:
    """A deleted instance's terminal goes with it (its shell, tmux server and supervisord group),
    whichever way it was deleted (API, admin, CLI)."""
    from terminals import service

    service.remove(instance.pk)  # type: ignore[attr-defined]
