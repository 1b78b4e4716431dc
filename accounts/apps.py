from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from accounts import (
            appaccess,  # noqa: F401  (connects the logout receiver)
            live,
        )

        live.connect_user_signals()  # open websockets end when their access does
