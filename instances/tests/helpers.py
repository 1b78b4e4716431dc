"""Small helpers shared by the instance tests."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings

from instances.models import Instance


def wait_status(instance: Instance, *statuses: str, timeout: float = 30.0) -> Instance:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        instance.refresh_from_db()
        if instance.status in statuses:
            return instance
        time.sleep(0.05)
    raise AssertionError(
        f"{instance.name}: status {instance.status!r}, wanted {statuses} after {timeout}s; "
        f"error={instance.error_message!r}\nlog:\n{instance.log_tail(3000)}"
    )


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def custom_blueprint(name: str, body: str) -> str:
    """Write a custom blueprint for one test and return its id."""
    path = Path(settings.CUSTOM_BLUEPRINTS_DIR) / f"{name}.sh"
    path.write_text(body)
    return name
