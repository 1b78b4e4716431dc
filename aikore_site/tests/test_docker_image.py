"""The Docker image as a user runs it: built from our Dockerfile with Debian's podman on a Debian
bookworm base (aikore_site/tests/podman.py), started with a ./config that root made and
PUID/PGID other than 1000, healthy by its own HEALTHCHECK, then: log in, create and start the demo
instance, reach it through the proxy (apps port after the hand-off, and its public port), see who runs
what, stop the container within its grace period and check who owns what in ./config. Prints the
figures bench/image.py reports in full (build time, start to healthy, idle memory, layers)."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from websockets.sync.client import connect

from aikore_site.files import file_lock
from aikore_site.tests import podman as podman_mod

# A cold build (pip, npm, apt) takes minutes; with podman's layer cache only the app's layers are rebuilt.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PUID, PGID, APP_UID = 1234, 2345, 911
FOREIGN_UID = 4321  # a model file the user put there with another owner: never chowned
STOP_GRACE = 15  # docker-compose.yml's stop_grace_period
IMAGE = "localhost/aikore:test"
CODE_RE = re.compile(r'id="aikore-code" type="application/json">([^<]+)<')


@pytest.fixture(scope="module")
def podman() -> Iterator[podman_mod.Podman]:
    """podman with the image built. One image test at a time on this machine (its storage and the
    build's CPU are shared by every checkout): the lock is held until the test is done."""
    reason = podman_mod.missing_prerequisite()
    if reason:
        pytest.skip(reason)
    tool = podman_mod.Podman()
    try:
        tool.check()
    except podman_mod.Unavailable as exc:
        pytest.skip(str(exc))
    reason = podman_mod.offline_reason()
    if reason:
        pytest.skip(reason)
    with file_lock(podman_mod.CACHE / "lock"):
        base_seconds = tool.ensure_base()
        build_seconds = tool.build_and_prune(IMAGE)
        print(f"\n[image] base {base_seconds:.1f} s, build {build_seconds:.1f} s (layers cached in {tool.storage})")
        for size, step in tool.layers(IMAGE)[:8]:
            print(f"[image]   {size / 1e6:8.1f} MB  {step}")
        print(f"[image] size {tool.inspect(IMAGE)['Size'] / 1e6:.0f} MB")
        yield tool


def _wait(predicate, timeout: float, what: str, log=lambda: "") -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{log()[-4000:]}")


def _login(base: str, password: str) -> httpx.Client:
    client = httpx.Client(timeout=30)
    client.get(base + "/login/")
    response = client.post(base + "/login/", data={"csrfmiddlewaretoken": client.cookies["aikore_csrftoken"],
                                                    "username": "admin", "password": password},
                           headers={"Referer": base + "/login/"})
    assert response.status_code == 302, response.text[-500:]
    client.headers.update({"X-CSRFToken": client.cookies["aikore_csrftoken"], "Referer": base + "/"})
    return client


def _app_page(client: httpx.Client, base: str, origin: str, origin_base: str, path: str) -> httpx.Response:
    """The hand-off as a browser does it, then the page."""
    page = client.get(base + "/_aikore/handoff", params={"to": origin, "next": path})
    assert page.status_code == 200, page.text[-500:]
    code = json.loads(CODE_RE.search(page.text).group(1))
    redeemed = client.get(origin_base + "/_aikore/redeem", params={"code": code, "next": path})
    assert redeemed.status_code == 302, redeemed.text[-500:]
    return client.get(origin_base + path)


def _umask(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)


def _uids_of(init_pid: int) -> tuple[dict[str, set[int]], psutil.Process]:
    """The real uids of the container's programs, by name, and the demo app's process."""
    found: dict[str, set[int]] = {}
    demo = None
    for proc in psutil.Process(init_pid).children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
            uid = proc.uids().real
        except psutil.Error:
            continue
        for key in ("supervisord", "aikore_site.webserver", "run_huey", "nginx: master", "demo_webui.py"):
            if key in line:
                found.setdefault(key, set()).add(uid)
        if "demo_webui.py" in line:
            demo = proc
    assert demo is not None, found
    return found, demo


def test_the_image_runs_as_users_run_it(podman: podman_mod.Podman, tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "models" / "checkpoints").mkdir(parents=True)  # root's, as `docker compose up` makes it
    model = config / "models" / "checkpoints" / "mine.safetensors"
    model.write_bytes(b"weights")
    os.chown(model, FOREIGN_UID, FOREIGN_UID)

    port = podman_mod.free_ports(4)
    main, apps, public = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", port + 2
    name = f"aikore-test-{uuid.uuid4().hex[:8]}"
    podman.run("run", "--detach", "--name", name, *podman_mod.ULIMITS,
               "-p", f"127.0.0.1:{port}:{port}", "-p", f"127.0.0.1:{port + 1}:{port + 1}",
               "-p", f"127.0.0.1:{public}-{public + 1}:{public}-{public + 1}",
               "-e", f"AIKORE_PORT={port}", "-e", f"AIKORE_APPS_PORT={port + 1}",
               "-e", f"AIKORE_PUBLIC_PORT_RANGE={public}-{public + 1}", "-e", f"PUID={PUID}", "-e", f"PGID={PGID}",
               "-e", "TZ=Europe/Paris", "-e", "UMASK=027",
               "-v", f"{config}:/config", IMAGE)
    started = time.monotonic()

    def logs() -> str:
        result = podman.run("logs", name, check=False)
        return result.stdout + result.stderr

    try:
        healthy = _wait(lambda: podman.healthy(name), 120, "the HEALTHCHECK to pass", logs)
        print(f"[image] start to healthy {healthy:.1f} s (health on port {port}, not 9000)")
        init = podman.inspect(name)["State"]["Pid"]
        time.sleep(3)  # settled: the boot job done, the first samples taken
        idle = podman_mod.container_memory(init)
        print(f"[image] idle: {idle['processes']} processes, PSS {idle['pss'] / 2**20:.0f} MiB, "
              f"RSS {idle['rss'] / 2**20:.0f} MiB")

        # The first start prints the admin's password (README: `docker compose logs | grep -A3 "admin
        # account"`) and keeps it in ./config/admin_password, AiKore's user's alone.
        printed = re.search(r"admin account created\n\s+user:\s+admin\n\s+password:\s+(\S+)", logs())
        assert printed, logs()
        password_file = config / "admin_password"
        assert password_file.read_text().strip() == printed.group(1)
        assert (password_file.stat().st_uid, stat.S_IMODE(password_file.stat().st_mode)) == (PUID, 0o600)
        client = _login(main, printed.group(1))
        created = client.post(main + "/api/instances", json={"name": "Demo", "base_blueprint": "demo-webui"})
        assert created.status_code in (200, 201), created.text
        pk = created.json()["id"]
        assert client.post(f"{main}/api/instances/{pk}/start").status_code in (200, 202)
        _wait(lambda: client.get(f"{main}/api/instances/{pk}").json()["status"] == "running", 60,
              "the demo instance to run", logs)
        info = client.get(f"{main}/api/instances/{pk}").json()
        page = _app_page(client, main, "apps", apps, "/instance/demo/")
        assert page.status_code == 200 and "AiKore Demo WebUI" in page.text, page.text[-500:]
        assert info["public_port"] in (public, public + 1)
        direct = _app_page(client, main, f"port:{info['public_port']}", f"http://127.0.0.1:{info['public_port']}", "/")
        assert direct.status_code == 200 and "AiKore Demo WebUI" in direct.text

        # Persistent mode in the image: the desktop (Xvnc, openbox, the kiosk chromium under its
        # managed policy) runs as the apps' user, shows the app, and streams through the apps port.
        desk = client.post(main + "/api/instances", json={"name": "Desk", "base_blueprint": "demo-webui",
                                                          "persistent_mode": True})
        assert desk.status_code in (200, 201), desk.text
        desk_pk = desk.json()["id"]
        assert client.post(f"{main}/api/instances/{desk_pk}/start").status_code in (200, 202)
        _wait(lambda: client.get(f"{main}/api/instances/{desk_pk}").json()["status"] == "running", 90,
              "the persistent instance to run", logs)
        display = client.get(f"{main}/api/instances/{desk_pk}").json()["vnc_display"]

        def kiosk_shows_the_app() -> bool:
            tree = podman.run("exec", "--user", "aikore-app", name, "xwininfo", "-display", f":{display}", "-root",
                              "-tree", check=False).stdout
            return "AiKore Demo WebUI - Desk" in tree

        _wait(kiosk_shows_the_app, 60, "the kiosk browser to show the app", logs)
        viewer = _app_page(client, main, "apps", apps, "/instance/desk/desktop/")
        assert viewer.status_code == 200, viewer.text[-500:]
        cookie = "; ".join(f"{key}={value}" for key, value in client.cookies.items())
        with connect(f"ws://127.0.0.1:{port + 1}/instance/desk/desktop/websockify", subprotocols=["binary"],
                     additional_headers={"Cookie": cookie, "Origin": apps}, open_timeout=10) as stream:
            assert stream.recv(timeout=10).startswith(b"RFB 003.008")
        desktop_uids = {proc.uids().real for proc in psutil.Process(init).children(recursive=True)
                        if proc.name() in ("Xvnc", "openbox", "chromium")}
        assert desktop_uids == {APP_UID}, desktop_uids
        policy = podman.run("exec", name, "cat", "/etc/chromium/policies/managed/aikore-kiosk.json").stdout
        assert json.loads(policy)["AllowFileSelectionDialogs"] is False

        # Who runs what: supervisord root, AiKore PUID, the app the apps' user; TZ reaches the app and
        # AiKore's Django processes (whose TIME_ZONE would otherwise set UTC).
        uids, demo = _uids_of(init)
        assert uids["supervisord"] == {0}
        for key in ("aikore_site.webserver", "run_huey", "nginx: master"):
            assert uids[key] == {PUID}, (key, uids)
        assert uids["demo_webui.py"] == {APP_UID}, uids
        assert demo.environ().get("TZ") == "Europe/Paris"
        # UMASK=027 for the apps, less the group's write bit (AiKore's group manages what they write).
        assert _umask(demo.pid) == 0o007
        zone = podman.run("exec", "--user", "aikore", "--env", "DJANGO_SETTINGS_MODULE=aikore_site.settings", name,
                          "/app/.venv/bin/python", "-c", "import time, django; django.setup(); print(time.strftime('%Z'))"
                          ).stdout.strip()
        assert zone in ("CET", "CEST"), zone
        denied = podman.run("exec", "--user", "aikore-app", name, "cat", "/config/secret_key", check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr

        stop_started = time.monotonic()
        podman.run("stop", "--time", str(STOP_GRACE), name, timeout=STOP_GRACE + 60)
        stop_seconds = time.monotonic() - stop_started
        state = podman.inspect(name)["State"]
        print(f"[image] stop with a running instance: {stop_seconds:.1f} s (grace {STOP_GRACE} s), "
              f"exit code {state['ExitCode']}")
        assert stop_seconds < STOP_GRACE and state["ExitCode"] == 0, logs()
    finally:
        podman.remove(name)
    print(f"[image] whole run {time.monotonic() - started:.1f} s")

    # ./config: AiKore's files are PUID's and private; the apps' are the apps' user's, in PGID's group;
    # nothing is root's; the user's model keeps its owner (no recursive chown of models).
    owners: dict[tuple[int, int], list[str]] = {}
    for path in [config, *config.rglob("*")]:
        st = path.lstat()
        owners.setdefault((st.st_uid, st.st_gid), []).append(str(path.relative_to(config)))
    assert set(owners) <= {(PUID, PGID), (APP_UID, PGID), (FOREIGN_UID, FOREIGN_UID)}, \
        {owner: paths[:5] for owner, paths in owners.items()}
    assert owners[(FOREIGN_UID, FOREIGN_UID)] == ["models/checkpoints/mine.safetensors"]
    for private in ("aikore.db", "secret_key", "stack_token"):
        st = (config / private).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (PUID, 0o600), private
    assert stat.S_IMODE(config.stat().st_mode) == 0o750
    outputs = config / "outputs" / "demo"
    assert outputs.stat().st_uid == PUID and stat.S_IMODE(outputs.stat().st_mode) == 0o2770
