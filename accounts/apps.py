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

        from django.contrib.auth.models import update_last_login
        from django.contrib.auth.signals import user_logged_in

        from accounts.auth import record_last_login

        # The same bookkeeping, but a full disk must not turn a good login into a server error.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
        user_logged_in.connect(record_last_login, dispatch_uid="update_last_login")
