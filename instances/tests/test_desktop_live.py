"""Persistent mode through the live stack (supervisord, nginx, the one websockify) with the real
Xvnc, openbox and chromium: the kiosk browser shows the demo app (seen from the X side), the VNC
stream through the proxy, who may reach it, a stop that leaves nothing, a desktop program on its
display, and 20 concurrent starts on distinct displays and ports."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from instances import desktop, desktop_launcher, supervisor
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from proxy.tests.helpers import app_client, apps_url

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DESKTOP_PROGRAM = """#!/usr/bin/env bash
# aikore.name: Desktop program (test)
# aikore.kind: test
# aikore.desktop: program
# aikore.ready: window
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"
# A small X window (the OneTrainer fixture's, ctypes + libX11), titled after the instance.
export FIXTURE_WINDOW_TITLE="desktop-program-$INSTANCE_SLUG"
aikore_exec python3 "$AIKORE_HOME/instances/tests/appfixtures/onetrainer_ui.py"
"""

LIGHT_PROGRAM = """#!/usr/bin/env bash
# aikore.name: Light desktop program (test)
# aikore.kind: test
# aikore.desktop: program
# aikore.ready: none
set -euo pipefail
source "$AIKORE_HOME/blueprints/functions.sh"
aikore_exec sleep 600
"""


def window_names(display: int) -> str:
    """Every window's name on the display, from the X server itself (x11-utils' xwininfo)."""
    result = subprocess.run(["xwininfo", "-display", f":{display}", "-root", "-tree"], capture_output=True,
                            text=True, timeout=10)
    return result.stdout


def desktop_pids(instance: Instance) -> list[int]:
    """The desktop's processes with their descendants (chromium's helpers included)."""
    found: set[int] = set()
    for pid in supervisor.group_pids(instance.pk):
        try:
            root = psutil.Process(pid)
            found.update(p.pid for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            pass
    return sorted(found)


def websockify_children() -> list[psutil.Process]:
    main = next((p for p in psutil.process_iter(["cmdline"])
                 if "websockify" in " ".join(p.info["cmdline"] or []) and str(settings.WEBSOCKIFY_SOCKET)
                 in " ".join(p.info["cmdline"] or [])), None)
    assert main is not None, "the stack's websockify is not running"
    return [c for c in main.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]


def start_persistent(name: str, blueprint: str = "demo-webui") -> Instance:
    instance = Instance.objects.create_instance(name=name, blueprint=blueprint, persistent_mode=True)
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=60)
    assert instance.status == InstanceStatus.RUNNING, f"{instance.error_message}\n{instance.log_tail(3000)}"
    return instance


async def rfb_greeting(url: str, headers: dict[str, str]) -> bytes:
    async with websockets.connect(url, additional_headers=headers, subprotocols=["binary"], open_timeout=10) as ws:
        return await asyncio.wait_for(ws.recv(), 10)


def test_kiosk_shows_the_app_then_stop_leaves_nothing(live, alice):
    instance = start_persistent("Desk Demo")
    display = instance.vnc_display
    assert display is not None and instance.vnc_port and instance.kiosk_port
    assert json.loads((instance.directory / "env.json").read_text())["env"]["DISPLAY"] == f":{display}"
    # The VNC port and the kiosk's listener are on the loopback address only.
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", instance.vnc_port) in listening
    assert {a[0] for a in listening if a[1] == instance.vnc_port} == {"127.0.0.1"}
    # The kiosk browser opens the app once it is ready, at the path users see it at: its window
    # title is the demo page's, read from the X server.
    wait_for(lambda: "AiKore Demo WebUI - Desk Demo" in window_names(display), 30, "the demo app in the kiosk")
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{instance.port}/stats").json()["websockets_open"] == 1, 15,
             "the kiosk page's websocket")
    env = httpx.get(f"http://127.0.0.1:{instance.kiosk_port}{instance.url_path}env").json()
    assert env["SUBFOLDER"] == instance.url_path
    # The token file maps this instance to its VNC port; nginx adds the token, the browser never.
    assert f"instance-{instance.pk}: 127.0.0.1:{instance.vnc_port}" in Path(settings.DESKTOP_TOKENS_FILE).read_text()

    with app_client(alice) as client:
        viewer = client.get(apps_url(instance.desktop_path))
        assert viewer.status_code == 200 and 'src="/_aikore/desktop.js"' in viewer.text
        assert "frame-ancestors" in viewer.headers["content-security-policy"]
        script = client.get(apps_url("/_aikore/desktop.js"))
        assert script.status_code == 200 and "clipboardPasteFrom" in script.text
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    ws_url = apps_url(instance.desktop_path + "websockify").replace("http://", "ws://")
    same_origin = apps_url()
    # The stream, through nginx and websockify, to the Xvnc of this instance (a token in the
    # browser's URL is ignored: nginx sets its own).
    stream = connect(ws_url + "?token=instance-999", additional_headers={"Cookie": cookie, "Origin": same_origin},
                     subprotocols=["binary"], open_timeout=10, legacy=True)
    greeting = stream.recv(timeout=10)
    assert greeting.startswith(b"RFB 003.008"), greeting
    sessions = websockify_children()
    assert sessions, "websockify forks a child per session"

    # Who may not: anonymous visitors (page and stream) and other origins' pages (even signed in).
    assert httpx.get(apps_url(instance.desktop_path)).status_code == 401
    with pytest.raises(websockets.InvalidStatus) as anonymous:
        asyncio.run(rfb_greeting(ws_url, {"Origin": same_origin}))
    assert anonymous.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as foreign:
        asyncio.run(rfb_greeting(ws_url, {"Cookie": cookie, "Origin": "http://evil.example"}))
    assert foreign.value.response.status_code == 403
    # An origin the instance lists may call the app, never drive its desktop.
    listed = "http://tools.example"
    instance.update_settings({"allowed_origins": listed})
    app_write = apps_url(f"{instance.url_path}stats")
    wait_for(lambda: httpx.post(app_write, headers={"Cookie": cookie, "Origin": listed}).status_code not in (401, 403), 10,
             "the listed origin accepted by the app")
    with pytest.raises(websockets.InvalidStatus) as listed_origin:
        asyncio.run(rfb_greeting(ws_url, {"Cookie": cookie, "Origin": listed}))
    assert listed_origin.value.response.status_code == 403
    instance.refresh_from_db()

    # Stop: no X server, window manager, browser (helpers included) or websockify session is left;
    # the display, its lock and socket and the VNC port are free again; websockify stays.
    pids = desktop_pids(instance)
    assert len(pids) >= 5, pids  # Xvnc, openbox, chromium and its helpers
    if settings.AIKORE_APP_USER:
        # Started as root: the desktop runs as the apps' user, like the app (what its file dialogs
        # can read is what the app can), never as AiKore's user or root.
        users = {psutil.Process(p).username() for p in pids if psutil.pid_exists(p)}
        assert users == {settings.AIKORE_APP_USER}, users
    lock_owner = desktop_launcher.lock_owner(display)
    assert lock_owner in pids
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED, timeout=30)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not desktop.lock_path(display).exists() and not desktop.socket_path(display).exists()
    wait_for(lambda: not [s for s in sessions if s.is_running() and s.status() != psutil.STATUS_ZOMBIE], 10,
             "the websockify session to end with its desktop")
    with pytest.raises(ConnectionClosed):
        stream.recv(timeout=10)
    assert websockify_children() == []
    assert (instance.vnc_display, instance.vnc_port) == (display, None)  # the display stays the instance's
    assert f"instance-{instance.pk}:" not in Path(settings.DESKTOP_TOKENS_FILE).read_text()
    assert instance.kiosk_port  # kept: the kiosk's origin, which its storage belongs to


def test_a_desktop_program_shows_on_its_display(live):
    bp = custom_blueprint("desk-program", DESKTOP_PROGRAM)
    instance = Instance.objects.create_instance(name="Desk Program", blueprint=bp)
    assert instance.persistent_mode  # implied by the blueprint
    instance.start()
    wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=30)
    assert instance.status == InstanceStatus.RUNNING, instance.error_message
    wait_for(lambda: "desktop-program-desk-program" in window_names(instance.vnc_display), 15, "its window")
    info = supervisor.desktop_info(instance.pk, "kiosk")
    assert info is None  # no browser on a desktop program's desktop
    # Persistent mode can't be turned off for it.
    with pytest.raises(Exception, match="desktop program"):
        instance.clean_changes({"persistent_mode": False})
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED, timeout=30)


def test_twenty_concurrent_persistent_starts_get_distinct_displays_and_ports(live):
    bp = custom_blueprint("desk-light", LIGHT_PROGRAM)
    instances = [Instance.objects.create_instance(name=f"Desk Light {n}", blueprint=bp) for n in range(20)]
    for instance in instances:
        instance.start()
    for instance in instances:
        wait_status(instance, InstanceStatus.RUNNING, InstanceStatus.FAILED, timeout=90)
        assert instance.status == InstanceStatus.RUNNING, f"{instance.name}: {instance.error_message}"
    displays = [i.vnc_display for i in instances]
    ports = [p for i in instances for p in (i.port, i.vnc_port)]
    assert len(set(displays)) == 20 and None not in displays, displays
    assert len(set(ports)) == 40 and None not in ports, ports
    for instance in instances:
        assert desktop.x_ready(instance.vnc_display), instance.vnc_display
        assert psutil.Process(desktop_launcher.lock_owner(instance.vnc_display)).name() == "Xvnc"
    for instance in instances:
        instance.stop()
    for instance in instances:
        wait_status(instance, InstanceStatus.STOPPED, timeout=60)
        assert instance.vnc_port is None
    assert not [d for d in displays if desktop.lock_path(d).exists() or desktop.socket_path(d).exists()]


def test_crash_restarts_and_restarts_keep_the_kiosk_origin_and_the_display(live):
    # The kiosk's port is its origin (the app's local storage belongs to it): our own nginx holding
    # it through the restart is no reason for a new one.
    instance = start_persistent("Desk Crash")
    kiosk_port, display = instance.kiosk_port, instance.vnc_display
    for how in ("crash", "restart"):
        pid = instance.pid
        if how == "crash":
            psutil.Process(pid).kill()
        else:
            instance.restart()

        def back(old: int | None = pid) -> bool:
            instance.refresh_from_db()
            return instance.status == InstanceStatus.RUNNING and instance.pid not in (None, old)

        wait_for(back, 60, f"the instance running again after a {how}")
        assert (instance.kiosk_port, instance.vnc_display) == (kiosk_port, display), how
        wait_for(lambda: "AiKore Demo WebUI - Desk Crash" in window_names(display), 30, "the app in the kiosk")
    instance.stop()
    wait_status(instance, InstanceStatus.STOPPED, timeout=30)
