"""Persistent mode: a desktop per instance (DESIGN.md, the VNC jobs).

An instance in persistent mode (or whose blueprint says `# aikore.desktop: program`) runs, as
programs of its own supervisord group beside its WebUI (instances/supervisor.py renders them):

    xvnc    TigerVNC's Xvnc on display :<vnc_display>, its VNC port on 127.0.0.1 only
    wm      openbox, with AiKore's configuration (no menu, nothing that starts a program)
    kiosk   for web apps: chromium in kiosk mode on the app, started once the app is ready, its
            profile in the instance's folder (desktop-browser/) so its storage and settings survive

instances/desktop_launcher.py starts each of them from the spec this module writes
(<instance>/desktop.json), so only ids and paths reach supervisord's config. Every process carries
the instance's markers (and joins its cgroup), so a stop ends all of them and nothing is left.

How the kiosk browser reaches the app: nginx serves the app to it on a loopback-only port of its
own (`kiosk_port`), exactly as users get it (the same /instance/<slug>/ path, prefix stripping and
GRADIO_ROOT_PATH, the app's own Host/Origin checks) but without the login check: the kiosk holds
no credential that could expire with a user's session or leak from its profile. That listener
gives nothing the app's own port (127.0.0.1:<port>, also without a login) does not already give to
local processes. The port is kept across restarts like `port`: it is the kiosk's origin, which the
app's local storage belongs to.

The browser side: one websockify for all desktops (AiKore's own supervisord program, on the unix
socket run/websockify.sock, mode 0600) maps the token `instance-<id>` to 127.0.0.1:<vnc_port>
through run/desktop-tokens (written here from the database); nginx adds the token server-side at
/instance/<slug>/desktop/websockify, behind the app-access check, so no token or password is ever
in a browser's URL. Xvnc runs with -SecurityTypes None: its port listens on 127.0.0.1 only, where
local processes could reach the app's own port anyway, and browsers only get there through nginx.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import psutil
from django.conf import settings
from django.db import IntegrityError, transaction

from aikore_site import procs
from aikore_site.files import atomic_write, file_lock
from instances.desktop_launcher import clean_stale, listening, lock_path, socket_path, x_listening
from instances.models import Instance

HERE = Path(__file__).resolve().parent
# openbox's configuration (XDG_CONFIG_HOME of the window manager): rc.xml without menus or keys
# that start programs (a terminal there would be a shell for anyone who may open the app).
OPENBOX_CONFIG_HOME = HERE / "desktop_config"
LAUNCHER = HERE / "desktop_launcher.py"
SPEC_FILE = "desktop.json"
PROFILE_DIRNAME = "desktop-browser"
TOKEN_PREFIX = "instance-"


class NoFreeDisplay(RuntimeError):
    pass


def token(instance_id: int) -> str:
    """websockify's name for an instance's desktop (not a secret: its socket is AiKore's alone)."""
    return f"{TOKEN_PREFIX}{int(instance_id)}"


def display_free(display: int) -> bool:
    """No X server has (or had, with a live owner) this display, after cleaning a dead one's files."""
    try:
        clean_stale(display)
    except PermissionError:
        return False  # another user's leftovers: leave that display alone
    return (not lock_path(display).exists() and not socket_path(display).exists()
            and not listening(f"\0{socket_path(display)}"))


def allocate_display(instance: Instance) -> int:
    """A display number for the instance's desktop: free on this machine and unique among
    instances (the database's unique constraint arbitrates racing starts, as for ports)."""
    if instance.vnc_display is not None:
        return instance.vnc_display
    low, high = settings.AIKORE_DISPLAY_RANGE
    for _attempt in range(50):
        used = set(Instance.objects.exclude(vnc_display__isnull=True).values_list("vnc_display", flat=True))
        candidate = next((n for n in range(low, high + 1) if n not in used and display_free(n)), None)
        if candidate is None:
            raise NoFreeDisplay(f"No free X display left in {low}-{high} (AIKORE_DISPLAY_RANGE).")
        try:
            with transaction.atomic():
                updated = Instance.objects.filter(pk=instance.pk, vnc_display__isnull=True).update(
                    vnc_display=candidate)
        except IntegrityError:
            continue  # another start took it between our read and write
        instance.refresh_from_db(fields=["vnc_display"])
        if updated or instance.vnc_display is not None:
            return instance.vnc_display
    raise NoFreeDisplay("Could not allocate an X display after 50 attempts.")


def release_display(instance: Instance) -> None:
    """Give the display (and VNC port) back: a display whose X server could not start there."""
    Instance.objects.filter(pk=instance.pk).update(vnc_display=None, vnc_port=None)
    instance.refresh_from_db(fields=["vnc_display", "vnc_port"])


def kiosk_url(instance: Instance) -> str:
    """What the kiosk browser opens: the app on its loopback listener, at the path users see."""
    path = "/" if instance.proxy_mode() == "origin" else instance.url_path
    return f"http://127.0.0.1:{int(instance.kiosk_port)}{path}"


def profile_dir(instance: Instance) -> Path:
    return instance.directory / PROFILE_DIRNAME


def log_path(instance_id: int, program: str) -> Path:
    return Path(settings.LOGS_DIR) / f"desktop-{int(instance_id)}-{program}.log"


def spec_for(instance: Instance) -> dict:
    """Everything desktop_launcher.py needs; user-typed values (the name) travel here, never in
    supervisord's config or a command line."""
    kind = instance.desktop_kind()
    return {
        "kind": kind,
        "display": int(instance.vnc_display),
        "rfb_port": int(instance.vnc_port),
        "geometry": settings.AIKORE_DESKTOP_GEOMETRY,
        "desktop_name": f"{instance.name} (AiKore)",
        "xvnc": str(settings.AIKORE_XVNC),
        "chromium": str(settings.AIKORE_CHROMIUM),
        "openbox_config_home": str(OPENBOX_CONFIG_HOME),
        "kiosk_url": kiosk_url(instance) if kind == "browser" and instance.kiosk_port else "",
        "profile": str(profile_dir(instance)),
        "env": instance.environment(),
    }


def write_spec(instance: Instance) -> None:
    # Read by desktop_launcher.py, which runs as the apps' user when they have their own (like
    # env.json: the folder's group is AiKore's, nothing secret is in it).
    atomic_write(instance.directory / SPEC_FILE, json.dumps(spec_for(instance), indent=1), 0o640)


def render_tokens() -> str:
    """websockify's token file (TokenFile plugin): one line per running desktop."""
    rows = Instance.objects.exclude(vnc_port__isnull=True).exclude(vnc_display__isnull=True).order_by("pk")
    lines = ["# rendered by AiKore (instances/desktop.py): websockify token -> the desktop's VNC port"]
    # Only instances that still have a desktop (persistent mode turned off while running: no token).
    lines += [f"{token(i.pk)}: 127.0.0.1:{int(i.vnc_port)}" for i in rows if i.desktop_kind()]
    return "\n".join(lines) + "\n"


def write_tokens() -> None:
    """Keep run/desktop-tokens equal to the database (atomically: websockify re-reads it at every
    connection, and a reader sees the old file or the new one)."""
    path = Path(settings.DESKTOP_TOKENS_FILE)
    with file_lock(Path(settings.RUN_DIR) / "desktop-tokens.lock"):
        text = render_tokens()
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        atomic_write(path, text, 0o600)


def x_ready(display: int) -> bool:
    """The X server accepts connections on its socket."""
    return x_listening(display)


def has_client_window(display: int) -> bool:
    """Does the window manager manage a window on the display (_NET_CLIENT_LIST, x11-utils' xprop)?"""
    xprop = shutil.which("xprop") or "/usr/bin/xprop"
    try:
        result = subprocess.run([xprop, "-display", f":{int(display)}", "-root", "_NET_CLIENT_LIST"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "window id #" in result.stdout


def missing_programs(kind: str, ready_kind: str) -> str:
    """What a desktop of this kind needs and this machine lacks, said for the user ("" if nothing):
    found now rather than as a black screen, or a `ready: window` check that times out."""
    needed = {"Xvnc": str(settings.AIKORE_XVNC), "openbox": "openbox"}
    if kind == "browser":
        needed["chromium"] = str(settings.AIKORE_CHROMIUM)
    if ready_kind == "window":
        needed["xprop"] = "xprop"
    missing = [name for name, program in needed.items() if shutil.which(program) is None]
    if not missing:
        return ""
    return (f"{', '.join(missing)} not found. Persistent mode needs Debian's tigervnc-standalone-server, "
            "openbox, chromium and x11-utils: `make run` installs them when run as root "
            "(scripts/system-deps.sh), and the Docker image has them.")


def nginx_listens(port: int) -> bool:
    """Is this loopback port held by this stack's own nginx (the instance's kiosk listener stays in
    its config through a crash restart or a quick restart)?"""
    ours = {proc.pid for proc in procs.nginx_processes(Path(settings.NGINX_DIR))}
    if not ours:
        return False
    try:
        connections = psutil.net_connections(kind="tcp4")
    except (psutil.Error, OSError):
        return False
    return any(conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid in ours
               for conn in connections)


def port_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
