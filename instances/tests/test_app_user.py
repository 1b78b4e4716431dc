"""Started as root, AiKore runs its own processes as AiKore's user and every instance as the apps'
user (aikore_site/privileges.py): an app can use its folder, outputs, the shared models, the caches
and its home, and can't read AiKore's database, secret key or tokens, reach its sockets or write its
configs. The test suite's stack runs as root in CI, so this is the live stack as users get it."""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from instances.models import Instance, InstanceStatus
from instances.tests.helpers import wait_for, wait_status

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(os.geteuid() != 0 or not settings.AIKORE_APP_USER,
                       reason="needs root: only a stack started as root runs its apps as a user of their own"),
]

DENIED = ["read aikore.db", "read aikore.db-wal", "read huey.db", "read secret_key", "read stack_token",
          "read run/stack.env", "list run", "list logs", "read daphne.log", "write supervisor config",
          "write custom blueprint", "rename data dir entry", "write the data dir", "write instances dir",
          "connect supervisor.sock", "connect daphne.sock", "connect events.sock"]
ALLOWED = ["write own folder", "write outputs", "read models", "write models", "write uv cache", "write home",
           "write tmp"]


def _probes(instance: Instance) -> dict[str, str]:
    return dict(re.findall(r"^probe ([^:\n]+): (.*)$", instance.log_tail(20000), re.M))


def test_an_app_cannot_reach_aikores_secrets_but_has_what_it_needs(live) -> None:
    instance = Instance.objects.create_instance(name="Probe", blueprint="secretsprobe")
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING)
    wait_for(lambda: "done" in _probes(instance), 20, "the probe's report")
    probes = _probes(instance)
    app, aikore = pwd.getpwnam(settings.AIKORE_APP_USER), pwd.getpwnam(settings.AIKORE_USER)
    assert probes["user"] == f"{app.pw_name} {app.pw_uid} {aikore.pw_gid}"
    assert probes["home"] == str(settings.AIKORE_INSTANCE_HOME)
    assert probes["tmp"] == str(settings.APPS_TMP_DIR)  # not the /tmp other users share
    assert int(probes["umask"], 8) & 0o020 == 0  # what it writes stays AiKore's group's to manage
    assert {name: probes.get(name) for name in DENIED} == dict.fromkeys(DENIED, "denied")
    assert {name: probes.get(name) for name in ALLOWED} == dict.fromkeys(ALLOWED, "allowed")
    data = Path(settings.AIKORE_DATA_DIR)
    assert (data / "secret_key").exists() and not (data / "evil").exists()
    # What it wrote is AiKore's group's, which may change and delete it.
    made = instance.output_dir / "probe-output"
    st = made.stat()
    assert (st.st_uid, st.st_gid) == (app.pw_uid, aikore.pw_gid) and st.st_mode & stat.S_IWGRP


def test_aikore_runs_as_its_user_and_supervisord_as_root(live) -> None:
    aikore = pwd.getpwnam(settings.AIKORE_USER)
    supervisord = int((Path(settings.RUN_DIR) / "supervisord.pid").read_text())
    assert psutil.Process(supervisord).uids().real == 0
    children = {p.pid: p for p in psutil.Process(supervisord).children()}
    names = {" ".join(p.cmdline()[1:3]): p.uids().real for p in children.values()}
    assert names and set(names.values()) == {aikore.pw_uid}, names
    # Its secrets and sockets are its own.
    for path in (settings.DATABASES["default"]["NAME"], Path(settings.AIKORE_DATA_DIR) / "secret_key",
                 settings.SUPERVISOR_SOCKET, settings.DAPHNE_SOCKET):
        st = os.stat(path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (aikore.pw_uid, 0o600), path
