"""pytest plugin loaded early (pytest.ini: -p aikore_site.testing), before Django's settings are
imported: gives the whole test run its own data dir and ports, and short lifecycle timings."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_BASETEMP: str | None = None  # pytest's --basetemp for this run (below), when it picks one
if not os.environ.get("AIKORE_TEST_DATA_DIR"):
    # The data dir sits alone in a folder of its own: a test can then tell a file AiKore wrote beside
    # it (outside the data dir) from what other programs write to /tmp meanwhile. Run as root, the
    # stacks' two users (below) must be able to enter it.
    _parent = tempfile.mkdtemp(prefix="aikore-test-")
    os.chmod(_parent, 0o711)
    os.environ["AIKORE_TEST_DATA_DIR"] = os.path.join(_parent, "data")
    if os.geteuid() == 0:
        # pytest's tmp_path folders in this folder too (pytest_configure), not in the /tmp/pytest-of-root
        # that every run as root shares: each pytest session closes that one (chmod 0700) when it
        # starts, which would lock the stacks' two users out of another run's tmp_path in mid-test.
        # A short name: unix socket paths in the stacks' data dirs there must stay under 108 bytes.
        _BASETEMP = os.path.join(_parent, "t")
os.environ["AIKORE_DATA_DIR"] = os.environ["AIKORE_TEST_DATA_DIR"]
os.environ.setdefault("AIKORE_PORT", str(free_port()))
os.environ.setdefault("AIKORE_APPS_PORT", str(free_port()))
os.environ.setdefault("AIKORE_INSTANCE_PORT_RANGE", "29001-29400")
os.environ.setdefault("AIKORE_PUBLIC_PORT_RANGE", "29401-29450")
os.environ.setdefault("AIKORE_STOP_TIMEOUT", "3")
os.environ.setdefault("AIKORE_RESTART_LIMIT", "3")
os.environ.setdefault("AIKORE_RESTART_BACKOFF", "1")
os.environ.setdefault("AIKORE_RESTART_BACKOFF_MAX", "8")
os.environ.setdefault("AIKORE_STABLE_SECONDS", "30")
os.environ.setdefault("AIKORE_READY_TIMEOUT", "30")
os.environ.setdefault("AIKORE_SAMPLE_INTERVAL", "0.5")
os.environ.setdefault("AIKORE_ADMIN_PASSWORD", "admin-test-password")
os.environ.setdefault("AIKORE_NOTIFY_RETRIES", "2")
os.environ.setdefault("AIKORE_NOTIFY_RETRY_DELAY", "1")
os.environ.setdefault("AIKORE_NOTIFY_TIMEOUT", "3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aikore_site.settings")
# No test reaches the internet: packages come from local indexes of tiny wheels the environment
# tests build (instances/tests/wheels.py) under the test data dir, and uv never downloads a Python.
_WHEELS = os.path.join(os.environ["AIKORE_DATA_DIR"], "test-wheels")
os.environ.setdefault("AIKORE_TORCH_INDEX_BASE", f"file://{_WHEELS}/torch")
os.environ.setdefault("UV_INDEX_URL", f"file://{_WHEELS}/simple")
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
# The stock blueprints clone from GitHub: in tests every https://github.com/<owner>/<repo> is a local
# fixture repository under test-repos/github.com/ (instances/tests/appfixtures builds them), through
# git's own configuration in the environment, which reaches the blueprints unchanged. Submodules of
# local repositories need the file protocol. Programs this machine lacks (the .NET SDK, ffmpeg) get
# stand-ins in test-bin/, first on PATH (only those missing are created).
_GIT_CONFIG = {
    f"url.{os.path.join(os.environ['AIKORE_DATA_DIR'], 'test-repos', 'github.com')}/.insteadOf": "https://github.com/",
    "protocol.file.allow": "always",
}
if "AIKORE_TEST_GIT_CONFIG" not in os.environ:
    _count = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    for _key, _value in _GIT_CONFIG.items():
        os.environ[f"GIT_CONFIG_KEY_{_count}"], os.environ[f"GIT_CONFIG_VALUE_{_count}"] = _key, _value
        _count += 1
    os.environ["GIT_CONFIG_COUNT"] = str(_count)
    os.environ["AIKORE_TEST_GIT_CONFIG"] = "1"
    # The fixture repositories are the test run's (root's, in CI) and the apps' user clones them: git
    # must not refuse them as "dubious ownership". Only protected configuration can say so, and a local
    # clone drops GIT_CONFIG_* for the side that reads the source: a system config file of the run's own.
    _system_config = os.path.join(os.path.dirname(os.environ["AIKORE_DATA_DIR"]), "gitconfig")
    if not os.path.exists(_system_config):
        with open(_system_config, "w") as _fh:
            _fh.write("[safe]\n\tdirectory = *\n")
        os.chmod(_system_config, 0o644)
    os.environ["GIT_CONFIG_SYSTEM"] = _system_config
    os.environ["PATH"] = os.path.join(os.environ["AIKORE_DATA_DIR"], "test-bin") + os.pathsep + os.environ.get("PATH", "")


# Run as root (CI), the stacks run AiKore as one unprivileged user and the instances as another
# (aikore_site/privileges.py), as the container does; this test process sees the same settings, so
# files it makes for the stack belong to AiKore's user (settings.AIKORE_FILE_OWNER).
from aikore_site import privileges  # noqa: E402 (standard library only)

privileges.adopt_for_root_process()


def pytest_sessionstart(session) -> None:
    """settings.py gave this process AiKore's umask (077); files the tests write for the stack's
    processes (blueprints, fixtures) must be readable by them, as a user's would be."""
    os.umask(0o022)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    if _BASETEMP and not config.option.basetemp:
        config.option.basetemp = _BASETEMP


def pytest_sessionfinish(session, exitstatus) -> None:
    session.config._aikore_passed = exitstatus == 0


def pytest_unconfigure(config) -> None:
    """A run that passed leaves no tmp_path folders behind (pytest would have kept the last three
    runs' in the shared folder; as root each run has its own, above): a failed run keeps them."""
    if _BASETEMP and config.option.basetemp == _BASETEMP and getattr(config, "_aikore_passed", False):
        import shutil

        shutil.rmtree(_BASETEMP, ignore_errors=True)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Browser tests run last, in one place: they are the slowest and need everything else working."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
