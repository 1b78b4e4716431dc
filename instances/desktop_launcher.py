"""Start one program of an instance's desktop (instances/desktop.py) from <instance>/desktop.json.

supervisord runs ``python desktop_launcher.py <instance dir> xvnc|wm|kiosk``; this builds the
program's environment as launcher.py does for the WebUI (AiKore's secrets and venv out, the
instance's variables and markers in, its cgroup joined) and replaces itself with the program, so
supervisord's process is Xvnc, openbox or chromium itself. Standard library only.

- xvnc: first removes the lock file and socket a crashed X server left on the display (only when
  the pid in the lock is dead), then runs Xvnc with its VNC port on 127.0.0.1 only.
- wm and kiosk wait for the X server; the kiosk also waits until nginx serves the app on its
  loopback listener (a reload may still be on its way when the app becomes ready), so the browser
  never opens on an error page.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__:  # imported by AiKore (instances/desktop.py: the display's files)
    from instances.launcher import MARKERS, child_environment, join_cgroup
else:  # run by supervisord (python -I -S): its own folder is not on sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from launcher import MARKERS, child_environment, join_cgroup

X_WAIT_SECONDS = 15.0
APP_WAIT_SECONDS = 60.0

# Chromium as a kiosk that keeps a web app working with nobody watching: no first-run pages,
# nothing fetched from Google (component updates, sync, safe-browsing lists, translate), no
# throttling of a page because its window is "hidden" (a VNC desktop nobody views), no keyring
# prompt (a profile's passwords stay in the profile), /tmp instead of a small /dev/shm (Docker's is
# 64 MB), software rendering (Xvnc has no GPU).
CHROMIUM_FLAGS = (
    "--kiosk", "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--disable-breakpad", "--disable-crash-reporter", "--noerrdialogs", "--hide-crash-restore-bubble",
    "--disable-infobars", "--password-store=basic", "--disable-dev-shm-usage", "--disable-gpu",
    "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding", "--disable-client-side-phishing-detection",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,SidePanelPinning",
    "--metrics-recording-only", "--no-pings", "--window-position=0,0",
)


def log(message: str) -> None:
    print(f"[aikore desktop] {message}", file=sys.stderr, flush=True)


X_SOCKET_DIR = Path("/tmp/.X11-unix")


def lock_path(display: int) -> Path:
    return Path(f"/tmp/.X{int(display)}-lock")


def socket_path(display: int) -> Path:
    return X_SOCKET_DIR / f"X{int(display)}"


def lock_owner(display: int) -> int | None:
    """The pid an X server wrote in the display's lock file (None: no lock, or unreadable)."""
    try:
        text = lock_path(display).read_text(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listening(path: Path | str) -> bool:
    """Does an X server accept connections on this unix socket (a path, or an abstract name)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def x_listening(display: int) -> bool:
    return listening(socket_path(display))


def clean_stale(display: int) -> list[str]:
    """Remove the lock file and socket a crashed X server left on `display` (a SIGKILL or a crash
    leaves them and Xvnc then refuses the display): only when their owner is dead; a live server's
    files are never touched, and another user's raise PermissionError. Returns what went. Run by
    AiKore when it allocates a display, and here before Xvnc starts (as the user that runs it)."""
    removed: list[str] = []
    lock, sock = lock_path(display), socket_path(display)
    if lock.exists():
        owner = lock_owner(display)
        if owner is None or pid_alive(owner):
            return removed  # someone's live server (or a lock we cannot read): not ours to judge
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            removed.append(str(lock))
    if sock.exists() and not listening(sock) and not listening(f"\0{sock}"):
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
            removed.append(str(sock))
    return removed


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            log(f"gave up waiting for {what} after {timeout:g} s")
            sys.exit(1)
        time.sleep(0.05)


def app_answers(url: str) -> bool:
    """nginx serves the app there (not refused, not a 502 while it reloads or the app restarts)."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=2)
    try:
        conn.request("GET", "/" + path, headers={"User-Agent": "AiKore-kiosk-check"})
        return conn.getresponse().status not in (502, 503, 504)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def clear_profile_locks(profile: str) -> None:
    """Chromium's Singleton{Lock,Socket,Cookie} in the profile. Only this program uses the profile
    and supervisord runs one of it, so any found now are a dead browser's: left by a SIGKILL, an
    OOM kill or a stack crash they make the next one refuse the profile ("in use on another
    computer" once the container's host name changed) and exit, again and again."""
    for name in ("SingletonLock", "SingletonSocket", "SingletonCookie"):
        path = os.path.join(profile, name)
        if os.path.lexists(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                log(f"removed the profile's stale {name}")


def needs_no_sandbox() -> bool:
    """Chromium's sandbox needs unprivileged user namespaces, which root (it refuses to run
    sandboxed as root) and most containers' seccomp profiles do not give."""
    if os.geteuid() == 0:
        return True
    unshare = shutil.which("unshare")
    if not unshare:
        return True
    try:
        return subprocess.run([unshare, "--user", "true"], capture_output=True, timeout=5).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return True


def command(program: str, spec: dict) -> list[str]:
    display = int(spec["display"])
    if program == "xvnc":
        return [spec["xvnc"], f":{display}", "-rfbport", str(int(spec["rfb_port"])), "-localhost",
                "-interface", "127.0.0.1", "-SecurityTypes", "None", "-geometry", spec["geometry"],
                "-UseIPv6=0", "-depth", "24", "-AlwaysShared", "-nolisten", "tcp",
                "-desktop", spec["desktop_name"]]
    if program == "wm":
        return [shutil.which("openbox") or "openbox"]
    if program == "kiosk":
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={spec['profile']}"]
        if needs_no_sandbox():
            flags.append("--no-sandbox")
        return [spec["chromium"], *flags, spec["kiosk_url"]]
    raise SystemExit(f"unknown desktop program {program!r}")


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit("usage: desktop_launcher.py <instance dir> xvnc|wm|kiosk")
    directory, program = argv[1], argv[2]
    with open(os.path.join(directory, "desktop.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    env = child_environment(os.environ, spec["env"])
    env.update({k: os.environ[k] for k in MARKERS if k in os.environ})
    env["DISPLAY"] = f":{int(spec['display'])}"
    join_cgroup(env.pop("AIKORE_CGROUP", ""))
    display = int(spec["display"])
    if program == "xvnc":
        for path in clean_stale(display):
            log(f"removed {path}, left by a dead X server on :{display}")
    else:
        wait_for(lambda: x_listening(display), X_WAIT_SECONDS, f"the X server on :{display}")
    if program == "wm":
        env["XDG_CONFIG_HOME"] = spec["openbox_config_home"]
    if program == "kiosk":
        if not spec.get("kiosk_url"):
            sys.exit("this desktop has no kiosk browser")
        os.makedirs(spec["profile"], exist_ok=True)
        clear_profile_locks(spec["profile"])
        wait_for(lambda: app_answers(spec["kiosk_url"]), APP_WAIT_SECONDS, f"the app at {spec['kiosk_url']}")
    argv_out = command(program, spec)
    os.chdir(directory)
    os.execvpe(argv_out[0], argv_out, env)


if __name__ == "__main__":
    main(sys.argv)
