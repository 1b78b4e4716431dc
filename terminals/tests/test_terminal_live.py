"""The instance terminal against the live stack: a real tmux server under the stack's supervisord,
a real pty per connection in the live daphne, websockets over daphne's socket. What the shell
sees, persistence across reconnects, several clients, a new shell after exit, bounded memory
under a flood, who is refused, the log of who opened it, and cleanup on delete."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus

from instances import supervisor
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from terminals import consumers, service
from terminals.tests.helpers import Term, connect, session_cookie, terminal_path

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

QUIET = "# aikore.ready: none\nexec sleep 100000\n"


def quiet_instance(name: str, **fields: object) -> Instance:
    return Instance.objects.create_instance(name=name, blueprint=custom_blueprint("term-quiet", QUIET), **fields)


def open_term(instance: Instance, user, **kwargs) -> Term:
    term = Term(connect(terminal_path(instance.pk), session_cookie(user)), **kwargs)
    term.wait_message("attached")
    return term


def daphne_pid(live) -> int:
    return int(live.supervisorctl("pid", "daphne").strip())


def test_shell_runs_in_the_instances_environment(live, alice):
    instance = quiet_instance("Term Env", gpu_ids="1")
    instance.start()
    instance = wait_status(instance, InstanceStatus.RUNNING)
    fake_env = instance.directory / "env" / "bin"
    fake_env.mkdir(parents=True)
    (fake_env / "python").write_text("#!/bin/sh\necho fake-python\n")
    (fake_env / "python").chmod(0o755)

    with open_term(instance, alice) as term:
        out = term.run('echo "port=$WEBUI_PORT slug=$INSTANCE_SLUG gpus=$CUDA_VISIBLE_DEVICES '
                       'secret=${AIKORE_SECRET_KEY:-none}${AIKORE_ADMIN_PASSWORD:-none}${DJANGO_SETTINGS_MODULE:-none} '
                       'term=$TERM venv=$VIRTUAL_ENV"; pwd; which python; echo "path=$PATH"; printf "utf8=\\u00e9\\u2713\\n"',
                       "done")
        assert f"port={instance.port} slug={instance.slug} gpus=1 secret=nonenonenone" in out
        assert f"venv={instance.directory / 'env'}" in out
        assert re.search(r"term=(tmux|screen|xterm)-256color", out)
        lines = out.splitlines()
        assert str(instance.directory) in lines  # pwd
        assert str(fake_env / "python") in lines  # which python: the instance's environment
        path = next(line for line in lines if line.startswith("path="))[5:].split(":")
        assert path[0] == str(fake_env)
        aikore_bin = os.path.realpath(Path(settings.BASE_DIR) / ".venv" / "bin")
        assert all(os.path.realpath(p) != aikore_bin for p in path)
        assert "utf8=é✓" in out
        assert "colours=256" in term.run("echo colours=$(tput colors)", "tput")
        # Files made here are the user's, like the app's: the instance's umask, not AiKore's 077.
        assert f"umask=0{settings.AIKORE_INSTANCE_UMASK[-3:]}" in term.run('echo "umask=$(umask)"', "umask")

        # Resize follows the browser's pane.
        term.send_json({"type": "resize", "cols": 123, "rows": 41})
        time.sleep(0.1)
        assert "41 123" in term.run("stty size", "size")


def test_session_survives_disconnects_and_serves_several_clients(live, alice):
    instance = quiet_instance("Term Keep")
    with open_term(instance, alice) as term:
        term.type("for i in $(seq 1 100000); do echo tick-$i; sleep 0.1; done\r")
        term.wait_for(r"tick-3\b")
        seen = max(int(n) for n in re.findall(r"tick-(\d+)", term.text()))
    # Gone; the loop runs on. Back: the earlier output (scrollback + screen), then new ticks.
    time.sleep(1)
    with open_term(instance, alice) as first, open_term(instance, alice) as second:
        first.wait_for(r"tick-1\b")
        assert first.messages[0] == {"type": "attached", "created": False, "stale": False}
        # The same loop goes on counting (a new shell would show no ticks, a restarted loop tick-1 again).
        first.wait_for(rf"tick-{seen + 10}\b")
        second.wait_for(rf"tick-{seen + 11}\b")
        # Keys typed the moment a client attaches reach the shell (they wait until tmux has taken
        # over the tty, which then is raw: ^C is a key, not a signal to tmux); all clients see it.
        with open_term(instance, alice) as third:
            third.type("\x03")
            third.type("echo all-$((40+2))\r")
            first.wait_for(r"all-42")
            second.wait_for(r"all-42")


def test_exit_ends_the_shell_until_a_new_one_is_asked_for(live, alice):
    instance = quiet_instance("Term Exit")
    with open_term(instance, alice) as term:
        old_pid = term.run("echo pid=$$", "pid").split("pid=")[-1].split()[0]
        term.type("exit\r")
        term.wait_message("ended")
        assert not service.session_alive(instance.pk)
        term.send_json({"type": "new_shell"})
        term.wait_message("attached")
        new_pid = term.run("echo pid=$$", "pid2").split("pid=")[-1].split()[0]
        assert new_pid.isdigit() and new_pid != old_pid

        # "New shell" on a live one replaces it too, with settings changed since it started
        # (which a connection is told about).
        instance.update_settings({"launch_args": "--changed"})
        with open_term(instance, alice) as other:
            assert other.messages[-1] == {"type": "attached", "created": False, "stale": True}
        term.send_json({"type": "new_shell"})
        term.wait_message("attached")
        assert "args=--changed" in term.run("echo args=$AIKORE_LAUNCH_ARGS", "args")


def test_a_tmux_server_that_stopped_answering_is_replaced(live, alice):
    instance = quiet_instance("Term Lost")
    with open_term(instance, alice) as term:
        term.run("true", "up")
    old_pid = supervisor.terminal_info(instance.pk)["pid"]
    service.socket_path(instance.pk).unlink()  # supervisord still runs it; nobody can reach it
    with open_term(instance, alice) as term:
        assert term.messages[-1]["created"] is True
        term.run("true", "again")
    assert supervisor.terminal_info(instance.pk)["pid"] != old_pid
    wait_for(lambda: not psutil.pid_exists(old_pid), 5, "the unreachable server to end")


def test_flood_is_bounded_and_stays_interruptible(live, alice):
    instance = quiet_instance("Term Flood")
    pid = daphne_pid(live)
    with open_term(instance, alice, ack=False) as term:  # a browser that stopped reading
        term.pump(1)
        baseline = psutil.Process(pid).memory_info().rss
        term.type("yes 'flooding the terminal with a long line of text'\r")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            term.pump(0.2)
        grown = psutil.Process(pid).memory_info().rss - baseline
        # Unacknowledged output stops at the window (plus one read), whatever `yes` writes.
        assert term.received <= consumers.WINDOW + consumers.READ_CHUNK, term.received
        assert grown < 30 * 1024 * 1024, f"daphne grew by {grown / 2**20:.1f} MiB"
        # The browser catches up: Ctrl-C gets through and the shell answers.
        term.ack = True
        term.send_json({"type": "ack", "bytes": term.received})
        term.type("\x03")
        term.run("true", "calm", timeout=20)
        assert psutil.Process(pid).memory_info().rss - baseline < 30 * 1024 * 1024


def test_only_admins_from_the_dashboards_origin_and_only_while_they_are(live, alice, bob, viewer,
                                                                        django_user_model):
    from websockets.exceptions import ConnectionClosed

    from accounts import roles
    from conftest import role_user

    instance = quiet_instance("Term Refused")
    path = terminal_path(instance.pk)
    for cookie, origin in ((None, None), (None, "http://aikore.test"), (session_cookie(bob), "http://aikore.test"),
                           (session_cookie(viewer), "http://aikore.test"),
                           (session_cookie(alice), "http://evil.example"), (session_cookie(alice), None),
                           (session_cookie(alice), "null")):
        with pytest.raises(InvalidStatus):
            with connect(path, cookie, origin) as conn:
                conn.recv(timeout=2)
    with pytest.raises(InvalidStatus):
        with connect(terminal_path(999999), session_cookie(alice)) as conn:
            conn.recv(timeout=2)
    assert supervisor.terminal_info(instance.pk) is None  # refused before any shell started

    # An admin's terminal closes the moment the account loses the role.
    carol = role_user(django_user_model, "carol", roles.ADMIN)
    with open_term(instance, carol) as term:
        term.run("true", "carol")
        roles.assign(carol, roles.OPERATOR)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                term.pump(10)
        assert closed.value.rcvd.code == 4401


def test_opens_and_closes_are_logged_and_delete_removes_everything(live, alice):
    instance = quiet_instance("Term Gone")
    escape = f"1000.{os.getpid()}{instance.pk}"  # a command line no other test's process has
    with open_term(instance, alice) as term:
        term.type("nohup sleep 1000 >/dev/null 2>&1 &\r")
        term.type(f"setsid -f sleep {escape} >/dev/null 2>&1\r")  # leaves the tmux server's tree
        shell_pid = int(term.run("echo shell=$$", "shell").split("shell=")[-1].split()[0])
    wait_for(lambda: "terminal closed by alice" in instance.log_tail(), 10, "close logged")
    assert "terminal opened by alice" in instance.log_tail()
    daphne_log = Path(settings.LOGS_DIR) / "daphne.log"
    assert f"instance {instance.pk} ({instance.slug}): terminal opened by alice" in daphne_log.read_text(errors="replace")

    tmux_pid = supervisor.terminal_info(instance.pk)["pid"]
    tree = [psutil.Process(tmux_pid), *psutil.Process(tmux_pid).children(recursive=True)]
    assert any(p.pid == shell_pid for p in tree) and any("sleep" in p.name() for p in tree)

    def escapees() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", escape]]

    wait_for(escapees, 5, "the setsid'd sleep")
    [escaped] = escapees()
    assert escaped.pid not in {p.pid for p in tree}
    socket = service.socket_path(instance.pk)
    instance.delete_everything()
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [*tree, escaped]), 5,
             "the terminal's processes to end")
    assert supervisor.terminal_info(instance.pk) is None
    assert not socket.exists() and not supervisor.terminal_conf_path(instance.pk).exists()
