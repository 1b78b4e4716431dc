"""The terminal's parts without a stack: the environment the tmux server (and so the shell) gets,
built by the real launcher; the tmux config loaded by a real tmux; the supervisord group; who may
open a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from conftest import role_user
from instances import supervisor
from instances.launcher import SCRUBBED
from terminals import service
from terminals.access import may_open_terminal
from terminals.shellenv import python_env_at, shell_environment

REPO = Path(settings.BASE_DIR)


def test_launcher_gives_the_server_the_instance_environment_with_its_python_env(tmp_path):
    """The launcher as supervisord runs it, with a stand-in for tmux that records what it got."""
    instance_dir = tmp_path / "inst"
    (instance_dir / "env" / "bin").mkdir(parents=True)
    (instance_dir / "env" / "bin" / "python").write_text("")
    record = tmp_path / "record.json"
    fake_tmux = tmp_path / "tmux"
    fake_tmux.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                         f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd()}}, open({str(record)!r}, 'w'))\n")
    fake_tmux.chmod(0o755)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "env": {"WEBUI_PORT": "19005", "INSTANCE_SLUG": "inst", "CUDA_VISIBLE_DEVICES": "1"},
        "directory": str(instance_dir), "python_env": python_env_at(str(instance_dir / "env")),
        "socket": str(tmp_path / "s.sock"), "config": str(service.TMUX_CONF), "tmux": str(fake_tmux),
    }))
    aikore_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "AIKORE_SECRET_KEY": "s3cret", "AIKORE_ADMIN_PASSWORD": "pw", "SUPERVISOR_ENABLED": "1",
           "CUDA_VISIBLE_DEVICES": "0,1,2", "PATH": f"{aikore_bin}:/usr/bin:/bin", "LC_ALL": "C", "TMUX": "x",
           "VIRTUAL_ENV": os.path.dirname(aikore_bin)}
    subprocess.run([sys.executable, "-m", "terminals.launcher", str(spec)], cwd=REPO, env=env, check=True, timeout=30)
    got = json.loads(record.read_text())
    assert got["argv"] == ["-D", "-S", str(tmp_path / "s.sock"), "-f", str(service.TMUX_CONF)]
    assert got["cwd"] == str(instance_dir)
    shell_env = got["env"]
    assert not (set(SCRUBBED) - {"VIRTUAL_ENV"}) & set(shell_env)  # VIRTUAL_ENV: the instance's now
    assert "TMUX" not in shell_env
    assert shell_env["WEBUI_PORT"] == "19005" and shell_env["CUDA_VISIBLE_DEVICES"] == "1"
    assert shell_env["VIRTUAL_ENV"] == str(instance_dir / "env")
    assert shell_env["PATH"].split(":") == [str(instance_dir / "env" / "bin"), "/usr/bin", "/bin"]
    assert shell_env["LC_CTYPE"] == "C.UTF-8" and "LC_ALL" not in shell_env


def test_shell_environment_without_a_python_env():
    env = {"PATH": "/usr/bin:/bin", "LANG": "en_US.UTF-8", "WEBUI_PORT": "19001"}
    assert shell_environment(env, python_env=None) == env
    assert python_env_at("/nonexistent/env") is None


def test_tmux_config_loads_and_makes_a_plain_shell(tmp_path):
    sock = tmp_path / "t.sock"
    server = subprocess.Popen([service.tmux_binary(), "-D", "-S", str(sock), "-f", str(service.TMUX_CONF)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=service.client_environment())
    try:
        deadline = time.monotonic() + 10
        def tmux(*args: str) -> str:
            return subprocess.run([service.tmux_binary(), "-N", "-S", str(sock), *args], capture_output=True,
                                  text=True, env=service.client_environment(), timeout=10).stdout.strip()
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        options = {name: tmux("show-options", "-gv", name)
                   for name in ("prefix", "status", "escape-time", "history-limit", "exit-empty", "window-size")}
        assert options == {"prefix": "None", "status": "off", "escape-time": "0", "history-limit": "10000",
                           "exit-empty": "off", "window-size": "latest"}
        assert "smcup@" in tmux("show-options", "-gv", "terminal-overrides")
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
    finally:
        server.terminate()
        server.wait(10)


def test_supervisord_group_of_a_terminal():
    command = [sys.executable, "-m", "terminals.launcher", "/data/run/tmux/instance-7.json"]
    text = supervisor.render_terminal_config(7, command, Path("/data/logs/terminal-7.log"))
    assert "[group:terminal-7]\nprograms=terminal-7-tmux" in text
    assert "[program:terminal-7-tmux]" in text and "autostart=false" in text
    assert "stopasgroup=true" in text and "killasgroup=true" in text
    assert f"\numask={settings.AIKORE_INSTANCE_UMASK}\n" in text  # the instance's, not AiKore's 077
    # The marker that finds what its shells leave running (setsid, daemons) when it goes.
    assert f'\nenvironment=AIKORE_TERMINAL="{settings.AIKORE_STACK_ID}:7"\n' in text
    assert supervisor.terminal_process(7) == "terminal-7:terminal-7-tmux"
    assert supervisor.instance_id_from_process("terminal-7-tmux") is None  # the watcher leaves it alone
    with pytest.raises(ValueError):
        supervisor.render_terminal_config(7, ["tmux", "a\nb"], Path("/x"))


@pytest.mark.django_db
def test_only_admins_may_open_a_terminal(alice, bob, viewer, nobody, django_user_model):
    from accounts import roles

    admin = role_user(django_user_model, "carol", roles.ADMIN)
    assert may_open_terminal(alice) and may_open_terminal(admin)  # a superuser; the admin role
    assert not any(may_open_terminal(u) for u in (bob, viewer, nobody, AnonymousUser(), None))
    admin.is_active = False
    assert not may_open_terminal(admin)
