from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifications.tests.helpers import Webhook


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()
