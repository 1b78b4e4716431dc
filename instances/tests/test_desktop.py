"""Persistent mode's parts without the live stack: stale X locks, display allocation, the blueprint
header key, the supervisord group, websockify's tokens and the nginx config it renders."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from instances import desktop, desktop_launcher, supervisor
from instances.blueprints import parse_metadata
from instances.models import Instance
from instances.tests.helpers import custom_blueprint
from proxy.render import render_nginx_config

pytestmark = pytest.mark.django_db


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def display():
    """A display number nothing uses, and its files removed afterwards."""
    n = next(n for n in range(7000, 7100) if desktop.display_free(n))
    yield n
    for path in (desktop.lock_path(n), desktop.socket_path(n)):
        path.unlink(missing_ok=True)


def test_a_dead_servers_lock_and_socket_are_cleaned(display):
    desktop.lock_path(display).write_text(f"{dead_pid():>10}\n")
    desktop_launcher.X_SOCKET_DIR.mkdir(exist_ok=True)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(desktop.socket_path(display)))  # a socket file nobody listens on
    assert desktop.clean_stale(display) == [str(desktop.lock_path(display)), str(desktop.socket_path(display))]
    assert desktop.display_free(display)


def test_a_live_owners_lock_is_left_alone(display):
    desktop.lock_path(display).write_text(f"{os.getpid():>10}\n")
    assert desktop.clean_stale(display) == []
    assert desktop.lock_path(display).exists() and not desktop.display_free(display)


def test_allocation_skips_displays_in_use(display, settings):
    settings.AIKORE_DISPLAY_RANGE = (display, display + 3)
    desktop.lock_path(display).write_text(f"{os.getpid():>10}\n")  # a live X server's
    bp = custom_blueprint("desk-unit", "#!/bin/bash\n# aikore.kind: test\n# aikore.desktop: program\nexec sleep 1\n")
    first = Instance.objects.create_instance(name="Desk A", blueprint=bp)
    second = Instance.objects.create_instance(name="Desk B", blueprint=bp)
    assert desktop.allocate_display(first) == display + 1
    assert desktop.allocate_display(second) == display + 2
    assert desktop.allocate_display(first) == display + 1  # kept while it runs
    desktop.release_display(first)
    assert first.vnc_display is None


def test_the_desktop_header_key():
    values, problems = parse_metadata("# aikore.desktop: program\n# aikore.ready: window\n")
    assert (values["desktop"], values["ready"], problems) == ("program", "window", [])
    values, problems = parse_metadata("# aikore.desktop: vnc\n")
    assert values["desktop"] == "" and problems and "aikore.desktop" in problems[0]


def test_group_config_tokens_and_nginx_for_a_persistent_instance(settings):
    instance = Instance.objects.create_instance(name="Desk Render", blueprint="demo-webui", persistent_mode=True)
    assert supervisor.desktop_programs(instance) == ()  # nothing before a display is allocated
    Instance.objects.filter(pk=instance.pk).update(vnc_display=4242, vnc_port=31399, kiosk_port=31398,
                                                   port=31397, want_running=True)
    instance.refresh_from_db()
    assert instance.desktop_kind() == "browser"
    assert instance.environment()["DISPLAY"] == ":4242"
    conf = supervisor.render_group_config(instance)
    group = f"instance-{instance.pk}"
    assert f"programs={group}-xvnc,{group}-wm,{group}-kiosk,{group}-webui" in conf
    assert conf.count(f'AIKORE_INSTANCE="{settings.AIKORE_STACK_ID}:{instance.pk}"') == 4  # every program marked
    spec = desktop.spec_for(instance)
    assert spec["kiosk_url"] == "http://127.0.0.1:31398/instance/desk-render/"
    assert spec["profile"] == str(instance.directory / "desktop-browser")
    assert f"instance-{instance.pk}: 127.0.0.1:31399" in desktop.render_tokens()
    text = render_nginx_config()
    assert "location = /instance/desk-render/desktop/websockify {" in text
    assert f"rewrite ^ /websockify?token=instance-{instance.pk}? break;" in text
    assert f"server unix:{settings.WEBSOCKIFY_SOCKET};" in text
    assert "listen 127.0.0.1:31398;" in text  # the kiosk's loopback listener
    kiosk = text[text.index("listen 127.0.0.1:31398;"):]
    kiosk = kiosk[:kiosk.index("\n    }\n")]
    assert "auth_request" not in kiosk  # no login there (loopback only, like the app's own port)
    # Off: no desktop, no route, no token.
    Instance.objects.filter(pk=instance.pk).update(persistent_mode=False)
    instance.refresh_from_db()
    assert supervisor.desktop_programs(instance) == () and "DISPLAY" not in instance.environment()
    assert "/desktop/websockify" not in render_nginx_config()


def test_a_stopped_instance_gives_its_vnc_port_back_and_keeps_its_display(settings):
    # The display stays the instance's (its terminal, which outlives stops, keeps DISPLAY: it must
    # never point at another instance's desktop); the kiosk port is the kiosk's origin.
    instance = Instance.objects.create_instance(name="Desk Free", blueprint="demo-webui", persistent_mode=True)
    Instance.objects.filter(pk=instance.pk).update(vnc_display=4243, vnc_port=31396, kiosk_port=31395)
    instance.refresh_from_db()
    instance.set_status("stopped")
    instance.refresh_from_db()
    assert (instance.vnc_display, instance.vnc_port, instance.kiosk_port) == (4243, None, 31395)
    assert instance.environment()["DISPLAY"] == ":4243"
    assert f"instance-{instance.pk}:" not in desktop.render_tokens()
    other = Instance.objects.create_instance(name="Desk Other", blueprint="demo-webui", persistent_mode=True)
    settings.AIKORE_DISPLAY_RANGE = (4243, 4244)
    assert desktop.allocate_display(other) == 4244  # not the stopped instance's


def test_no_token_once_persistent_mode_is_off():
    instance = Instance.objects.create_instance(name="Desk Off", blueprint="demo-webui", persistent_mode=True)
    Instance.objects.filter(pk=instance.pk).update(vnc_display=4245, vnc_port=31394)
    assert f"instance-{instance.pk}: 127.0.0.1:31394" in desktop.render_tokens()
    Instance.objects.filter(pk=instance.pk).update(persistent_mode=False)
    assert f"instance-{instance.pk}:" not in desktop.render_tokens()


def test_missing_desktop_programs_are_named_before_anything_starts(settings):
    assert desktop.missing_programs("browser", "http") == ""  # this machine has them all
    settings.AIKORE_CHROMIUM = "/nonexistent/chromium"
    assert desktop.missing_programs("program", "window") == ""  # no browser needed
    problem = desktop.missing_programs("browser", "http")
    assert problem.startswith("chromium not found") and "system-deps.sh" in problem
    settings.AIKORE_XVNC = "/nonexistent/Xvnc"
    assert desktop.missing_programs("program", "tcp").startswith("Xvnc not found")


def test_a_dead_browsers_profile_locks_are_removed_before_the_kiosk_starts(tmp_path):
    profile = tmp_path / "desktop-browser"
    profile.mkdir()
    (profile / "SingletonLock").symlink_to("old-container-host-4242")  # chromium's: a dangling link
    (profile / "SingletonCookie").symlink_to("1234")
    (profile / "Preferences").write_text("{}")
    desktop_launcher.clear_profile_locks(str(profile))
    assert sorted(p.name for p in profile.iterdir()) == ["Preferences"]


def test_a_desktop_program_supervisord_gave_up_on_is_said_in_the_instances_log(settings):
    from instances.management.commands.supervisor_events import Command

    instance = Instance.objects.create_instance(name="Desk Fatal", blueprint="demo-webui", persistent_mode=True)
    Instance.objects.filter(pk=instance.pk).update(want_running=True)
    desktop.log_path(instance.pk, "kiosk").parent.mkdir(parents=True, exist_ok=True)
    desktop.log_path(instance.pk, "kiosk").write_text("[aikore desktop] chromium: cannot open display\n")
    Command().dispatch("PROCESS_STATE_FATAL", {"processname": f"instance-{instance.pk}-kiosk", "groupname":
                                               f"instance-{instance.pk}", "from_state": "BACKOFF", "pid": ""})
    tail = instance.log_tail(2000)
    assert "its kiosk browser kept failing and was given up" in tail and "cannot open display" in tail
    # Its other events are not the WebUI's: no exit is recorded for the instance.
    instance.refresh_from_db()
    assert instance.status == "stopped" and instance.exit_code is None
