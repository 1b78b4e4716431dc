from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifications"

    def ready(self) -> None:
        from instances.signals import instance_event
        from monitoring.signals import sample_taken
        from notifications import receivers

        instance_event.connect(receivers.on_instance_event, dispatch_uid="notifications.instance_event")
        sample_taken.connect(receivers.on_sample, dispatch_uid="notifications.sample_taken")
