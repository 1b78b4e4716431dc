"""Shared fixtures. The live stack is the real thing: docker/entry.sh starts supervisord, which runs
daphne, the huey worker, the event watcher and nginx, against the test run's own data dir (set up
by aikore_site/testing.py) and the same SQLite file pytest-django migrated."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent
TEST_BLUEPRINTS = REPO / "instances" / "tests" / "blueprints"
# The live stack also serves each instance at the root of its own port (nginx, proxy/). Settings
# are loaded before this file, so tests that render the nginx config in-process set the same
# range with the settings fixture (proxy/tests).
PUBLIC_PORT_RANGE = os.environ.get("AIKORE_PUBLIC_PORT_RANGE") or "29401-29450"


class Stack:
    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.data_dir = Path(settings.AIKORE_DATA_DIR)
        self.port = settings.AIKORE_PORT
        self.base_url = f"http://127.0.0.1:{self.port}"

    def daphne_client(self, **kwargs: object) -> httpx.Client:
        """HTTP straight to daphne's unix socket (bypassing nginx)."""
        transport = httpx.HTTPTransport(uds=str(settings.DAPHNE_SOCKET))
        return httpx.Client(transport=transport, base_url="http://127.0.0.1", timeout=30, **kwargs)

    def supervisorctl(self, *args: str) -> str:
        out = subprocess.run(
            [str(REPO / ".venv" / "bin" / "supervisorctl"), "-c", str(REPO / "docker" / "supervisord.conf"), *args],
            capture_output=True, text=True, env={**os.environ, **stack_env()}, timeout=60,
        )
        return out.stdout + out.stderr

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stack_env() -> dict[str, str]:
    return {
        "AIKORE_DATA_DIR": str(settings.AIKORE_DATA_DIR),
        "AIKORE_HOME": str(REPO),
        "AIKORE_PYTHON": str(REPO / ".venv" / "bin" / "python"),
        "AIKORE_PUBLIC_PORT_RANGE": PUBLIC_PORT_RANGE,
    }


def _wait_for(predicate, timeout: float, what: str, stack_log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    log = stack_log.read_text(errors="replace") if stack_log.exists() else ""
    raise RuntimeError(f"stack did not come up: {what}\n{log[-4000:]}")


def _nginx_up() -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{settings.AIKORE_PORT}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _daphne_up() -> bool:
    try:
        transport = httpx.HTTPTransport(uds=str(settings.DAPHNE_SOCKET))
        with httpx.Client(transport=transport, base_url="http://127.0.0.1", timeout=2) as client:
            return client.get("/api/health").status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker) -> Iterator[Stack]:
    data_dir = Path(settings.AIKORE_DATA_DIR)
    custom = Path(settings.CUSTOM_BLUEPRINTS_DIR)
    custom.mkdir(parents=True, exist_ok=True)
    if TEST_BLUEPRINTS.is_dir():
        for script in TEST_BLUEPRINTS.glob("*.sh"):
            shutil.copy(script, custom / script.name)
    log_path = data_dir / "stack.log"
    env = {**os.environ, **stack_env()}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(REPO / "docker" / "entry.sh")], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    stack = Stack(proc, log_path)
    try:
        _wait_for(lambda: proc.poll() is None and Path(settings.SUPERVISOR_SOCKET).exists(), 60,
                  "supervisord socket", log_path)
        _wait_for(_daphne_up, 60, "daphne answering /api/health", log_path)
        _wait_for(_nginx_up, 60, "nginx answering /api/health on AIKORE_PORT", log_path)
        extra = getattr(settings, "AIKORE_TEST_STACK_READY", None)
        if extra:
            _wait_for(extra, 30, "extra readiness", log_path)
        yield stack
    finally:
        with django_db_blocker.unblock():
            _delete_all_instances()
        from aikore_site.tests.stacks import kill_group

        kill_group(proc)


def _delete_all_instances() -> None:
    from django.db.models import F

    from instances.models import Instance

    # Satellites first: a parent can't go while they exist.
    for instance in Instance.objects.order_by(F("parent").asc(nulls_last=True)):
        try:
            instance.delete_everything()
        except Exception:  # best effort at teardown
            pass


@pytest.fixture
def live(stack: Stack, transactional_db) -> Iterator[Stack]:
    """A test against the live stack, with a DB the stack's processes see (no wrapping
    transaction). Instances it created are stopped and deleted afterwards."""
    yield stack
    _delete_all_instances()


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's tmp_path (mode 0700), open to the stack's two users (they may enter it, not list it):
    tests put fixture repositories and data dirs there (aikore_site/privileges.py)."""
    from aikore_site.tests.stacks import open_for_stack_users

    open_for_stack_users(tmp_path / "_")
    return tmp_path


@pytest.fixture
def alice(django_user_model):
    """Staff user (the admin of a typical install)."""
    return django_user_model.objects.create_superuser("alice", "alice@example.org", "alice-password")


@pytest.fixture
def bob(django_user_model):
    """A regular, non-staff user with the operator role."""
    return role_user(django_user_model, "bob", "operator")


def role_user(django_user_model, username: str, role: str | None):
    from accounts import roles

    user = django_user_model.objects.create_user(username, f"{username}@example.org", f"{username}-password")
    roles.assign(user, role)
    return user


@pytest.fixture
def viewer(django_user_model):
    """A user with the viewer role (password: viewer-password)."""
    return role_user(django_user_model, "viewer", "viewer")


@pytest.fixture
def operator(django_user_model):
    """A user with the operator role (password: operator-password)."""
    return role_user(django_user_model, "operator", "operator")


@pytest.fixture
def nobody(django_user_model):
    """An active user with no role (password: nobody-password)."""
    return role_user(django_user_model, "nobody", None)


@pytest.fixture(autouse=True)
def _clear_cache():
    """Sessions live in the cache (cached_db): start every test with a clean slate."""
    from django.core.cache import cache

    cache.clear()


_LINTED: dict[str, list[str]] = {}  # blueprint text hash -> its lint problems (each text linted once)


@pytest.fixture(autouse=True)
def _lint_custom_blueprints() -> Iterator[None]:
    """Every blueprint a test writes into the custom blueprints folder passes the blueprint lint
    (instances/blueprintlint.py), like the stock ones (instances/tests/test_blueprint_lint.py): a
    test that wrote one that does not fails at its teardown, naming the file and the problems."""
    yield
    import hashlib

    from instances.blueprintlint import lint_text

    directory = Path(settings.CUSTOM_BLUEPRINTS_DIR)
    if not directory.is_dir():
        return
    failures = []
    for path in sorted(directory.glob("*.sh")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        key = hashlib.sha256(text.encode()).hexdigest()
        if key not in _LINTED:
            _LINTED[key] = lint_text(text)
        if _LINTED[key]:
            failures.append(f"{path.name}: " + "; ".join(_LINTED[key]))
    if failures:
        pytest.fail("custom blueprints written by this test fail the blueprint lint:\n" + "\n".join(failures))
