"""AiKore settings: everything a user can change comes from the environment (see DESIGN.md).

The small helpers below fail loudly on bad values, so a typo in AIKORE_PORT stops the start with a
clear message instead of a half-working stack.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import secrets
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from aikore_site.files import ensure_dir
from aikore_site.procs import cgroup_root, stack_id_for

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} is outside {minimum}..{maximum}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be >= {minimum}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_port_range(name: str, default: str) -> tuple[int, int] | None:
    raw = os.environ.get(name, default).strip()
    if raw == "":
        return None
    match = re.fullmatch(r"(\d{1,5})\s*-\s*(\d{1,5})", raw)
    if not match:
        raise ImproperlyConfigured(f"{name} must look like 19001-19999, got {raw!r}")
    low, high = int(match.group(1)), int(match.group(2))
    if not (1024 <= low <= high <= 65535):
        raise ImproperlyConfigured(f"{name}={raw!r}: need 1024 <= low <= high <= 65535")
    return low, high


def env_apprise_urls(name: str) -> list[str]:
    """Apprise URLs separated by commas or spaces; one that Apprise does not understand stops the
    start, naming only its scheme (the rest may be a secret)."""
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return []
    from notifications.apprise_urls import split_urls, validate_url

    urls = split_urls(raw)
    for url in urls:
        problem = validate_url(url)
        if problem:
            raise ImproperlyConfigured(f"{name}: {problem}")
    return urls


def _secret_from_file(path: Path, nbytes: int = 48) -> str:
    """Read a generated secret, creating it once with mode 0600 (atomic create, no race)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def env_origin(name: str, value: str) -> str:
    """scheme://host[:port] (a path is refused): a public URL or a trusted origin."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path not in ("", "/")
            or parts.query or parts.fragment or parts.username or parts.password
            or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", parts.netloc)):
        raise ImproperlyConfigured(f"{name} must look like https://aikore.example.com[:port], got {value!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def env_networks(name: str) -> list[str]:
    """Comma- or space-separated IP addresses or networks (CIDR), normalised."""
    networks = []
    for item in re.split(r"[\s,]+", os.environ.get(name, "").strip()):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or network") from None
    return networks


# AiKore's own processes create private files (0600) and directories (0700): the database, the
# secret key and the sockets are never readable by other local users. Instances get back the umask
# AiKore was started with (AIKORE_INSTANCE_UMASK: docker/entry.sh exports it before its own
# umask 077; a process that starts here passes its original one on to the processes it starts).
_started_umask = os.umask(0o077)
os.environ.setdefault("AIKORE_INSTANCE_UMASK", f"{_started_umask:03o}")

# --- AiKore's own settings -------------------------------------------------------------------

AIKORE_DATA_DIR = Path(env_str("AIKORE_DATA_DIR", str(BASE_DIR / "data"))).resolve()
# The data dir reaches supervisord and nginx config files: refuse characters that would need
# quoting there rather than trying to quote them in three different syntaxes.
if not re.fullmatch(r"[A-Za-z0-9_./-]+", str(AIKORE_DATA_DIR)):
    raise ImproperlyConfigured(
        f"AIKORE_DATA_DIR={str(AIKORE_DATA_DIR)!r} may only contain letters, digits, '_', '.', '/', '-'"
    )
AIKORE_PORT = env_int("AIKORE_PORT", 9000, 1, 65535)
AIKORE_BIND = env_str("AIKORE_BIND", "127.0.0.1")
if not re.fullmatch(r"[0-9A-Fa-f.:\[\]]+|localhost|\*", AIKORE_BIND):
    raise ImproperlyConfigured(f"AIKORE_BIND must be an IP address, got {AIKORE_BIND!r}")
AIKORE_INSTANCE_PORT_RANGE = env_port_range("AIKORE_INSTANCE_PORT_RANGE", "19001-19999")
if AIKORE_INSTANCE_PORT_RANGE is None:
    raise ImproperlyConfigured("AIKORE_INSTANCE_PORT_RANGE must not be empty")
AIKORE_PUBLIC_PORT_RANGE = env_port_range("AIKORE_PUBLIC_PORT_RANGE", "")
# The apps origin: every instance at /instance/<slug>/ on a port of its own, never the control
# plane's origin (DESIGN.md, Isolation).
AIKORE_APPS_PORT = env_int("AIKORE_APPS_PORT", AIKORE_PORT + 1 if AIKORE_PORT < 65535 else 65534, 1, 65535)
if AIKORE_APPS_PORT == AIKORE_PORT:
    raise ImproperlyConfigured(f"AIKORE_APPS_PORT must differ from AIKORE_PORT ({AIKORE_PORT})")
if AIKORE_PUBLIC_PORT_RANGE and AIKORE_PUBLIC_PORT_RANGE[0] <= AIKORE_APPS_PORT <= AIKORE_PUBLIC_PORT_RANGE[1]:
    raise ImproperlyConfigured(
        f"AIKORE_APPS_PORT={AIKORE_APPS_PORT} lies inside AIKORE_PUBLIC_PORT_RANGE: start the range after it")
if AIKORE_PUBLIC_PORT_RANGE and AIKORE_PUBLIC_PORT_RANGE[0] <= AIKORE_PORT <= AIKORE_PUBLIC_PORT_RANGE[1]:
    raise ImproperlyConfigured(f"AIKORE_PORT={AIKORE_PORT} lies inside AIKORE_PUBLIC_PORT_RANGE")
# Optional: each instance also at <slug>.<domain> (wildcard DNS, usually behind a TLS proxy); the
# dashboard is then expected at <domain> itself, on the same scheme and port.
AIKORE_APPS_DOMAIN = env_str("AIKORE_APPS_DOMAIN", "").strip().lower().rstrip(".")
if AIKORE_APPS_DOMAIN and not re.fullmatch(
        r"(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", AIKORE_APPS_DOMAIN):
    raise ImproperlyConfigured(f"AIKORE_APPS_DOMAIN must be a DNS name like apps.example.com, got {AIKORE_APPS_DOMAIN!r}")
# Behind a TLS reverse proxy: the URL users reach the dashboard at. It becomes a CSRF trusted origin,
# makes AiKore's cookies Secure, and is the control plane's origin in every absolute URL (pages on
# app origins link back to it). Extra trusted origins: AIKORE_CSRF_TRUSTED_ORIGINS.
AIKORE_PUBLIC_URL = env_origin("AIKORE_PUBLIC_URL", os.environ["AIKORE_PUBLIC_URL"]) \
    if os.environ.get("AIKORE_PUBLIC_URL", "").strip() else ""
AIKORE_CSRF_TRUSTED_ORIGINS = [env_origin("AIKORE_CSRF_TRUSTED_ORIGINS", item) for item in
                               re.split(r"[\s,]+", os.environ.get("AIKORE_CSRF_TRUSTED_ORIGINS", "").strip()) if item]
# Proxies whose X-Forwarded-For (the client's address) and X-Forwarded-Proto (its scheme) nginx
# believes; every other client's copies of those headers are ignored (proxy/templates/proxy/nginx.conf).
AIKORE_TRUSTED_PROXIES = env_networks("AIKORE_TRUSTED_PROXIES")
AIKORE_SECURE_COOKIES = AIKORE_PUBLIC_URL.startswith("https://")
AIKORE_INSTANCE_UMASK = env_str("AIKORE_INSTANCE_UMASK", "022").strip() or "022"
if not re.fullmatch(r"0?[0-7]{3}", AIKORE_INSTANCE_UMASK):
    raise ImproperlyConfigured(f"AIKORE_INSTANCE_UMASK (or UMASK) must be an octal umask like 022, got {AIKORE_INSTANCE_UMASK!r}")
# Who runs what (aikore_site/privileges.py). docker/entry.sh exports both: started as root, AiKore's
# processes run as AIKORE_USER and the instances (and their terminals) as AIKORE_APP_USER, a second
# unprivileged user that can't read AiKore's database, secret key, tokens or sockets; started as a
# normal user, AIKORE_USER is that user and AIKORE_APP_USER is empty: instances run as AiKore does.


def env_user(name: str) -> str:
    value = env_str(name, "").strip()
    if value:
        try:
            pwd.getpwnam(value)
        except KeyError:
            raise ImproperlyConfigured(f"{name}={value!r}: no such user on this system") from None
    return value


AIKORE_USER = env_user("AIKORE_USER")
AIKORE_APP_USER = env_user("AIKORE_APP_USER")
if AIKORE_APP_USER and AIKORE_APP_USER == AIKORE_USER:
    AIKORE_APP_USER = ""
if AIKORE_APP_USER and not AIKORE_USER:
    raise ImproperlyConfigured("AIKORE_APP_USER is set: AIKORE_USER must say AiKore's own user too")
# (uid, gid) that files this process creates for AiKore should belong to: AiKore's user, when this
# process is root and AiKore is not (the start-up steps of docker/entry.sh, the tests); else None.
AIKORE_FILE_OWNER = ((pwd.getpwnam(AIKORE_USER).pw_uid, pwd.getpwnam(AIKORE_USER).pw_gid)
                     if AIKORE_APP_USER and os.geteuid() == 0 else None)
# Folders instances write (their own, outputs/, models/, cache/, home/, terminals/) are shared with
# AiKore's group (setgid, 2770) when the apps run as a user of their own.
SHARED_DIR_MODE = 0o2770 if AIKORE_APP_USER else None
if AIKORE_APP_USER:
    # Apps run as a user of their own: what they write stays writable by AiKore's group (AiKore
    # cleans up after them; the host user of PGID manages outputs). Only the group's write bit is kept.
    AIKORE_INSTANCE_UMASK = f"{int(AIKORE_INSTANCE_UMASK, 8) & ~0o020:03o}"
AIKORE_ADMIN_USER = env_str("AIKORE_ADMIN_USER", "admin")
AIKORE_REDIS_URL = env_str("AIKORE_REDIS_URL", "")

# Lifecycle tuning. Defaults fit real WebUIs; tests shorten them.
AIKORE_STOP_TIMEOUT = env_int("AIKORE_STOP_TIMEOUT", 10, 1, 3600)
AIKORE_READY_TIMEOUT = env_int("AIKORE_READY_TIMEOUT", 1800, 1, 86400)
AIKORE_RESTART_LIMIT = env_int("AIKORE_RESTART_LIMIT", 5, 0, 1000)
AIKORE_RESTART_BACKOFF = env_float("AIKORE_RESTART_BACKOFF", 1.0, 0.1)
AIKORE_RESTART_BACKOFF_MAX = env_float("AIKORE_RESTART_BACKOFF_MAX", 60.0, 0.1)
AIKORE_STABLE_SECONDS = env_float("AIKORE_STABLE_SECONDS", 60.0, 0.1)
AIKORE_LOG_MAX_BYTES = env_int("AIKORE_LOG_MAX_BYTES", 10 * 1024 * 1024, 1024)
AIKORE_LOG_BACKUPS = env_int("AIKORE_LOG_BACKUPS", 3, 0, 100)
AIKORE_SAMPLE_INTERVAL = env_float("AIKORE_SAMPLE_INTERVAL", 1.0, 0.05)
AIKORE_HISTORY_SECONDS = env_int("AIKORE_HISTORY_SECONDS", 900, 60, 86400)
# How often a missing/failed NVML is retried (never in a hot loop).
AIKORE_GPU_RETRY_SECONDS = env_float("AIKORE_GPU_RETRY_SECONDS", 60.0, 1.0)
# Demo/test GPUs on a machine without one (0 = the real NVML, the default).
AIKORE_FAKE_GPUS = env_int("AIKORE_FAKE_GPUS", 0, 0, 16)

# Notifications (notifications/): Apprise URLs from the environment (more are added in the
# dashboard), the system thresholds that raise an event (0 = off), delivery retries and bounds.
AIKORE_NOTIFY_URLS = env_apprise_urls("AIKORE_NOTIFY_URLS")
AIKORE_NOTIFY_DISK_FREE_PERCENT = env_float("AIKORE_NOTIFY_DISK_FREE_PERCENT", 5.0)
if AIKORE_NOTIFY_DISK_FREE_PERCENT > 100:
    raise ImproperlyConfigured(f"AIKORE_NOTIFY_DISK_FREE_PERCENT={AIKORE_NOTIFY_DISK_FREE_PERCENT} must be <= 100")
AIKORE_NOTIFY_DISK_FREE_BYTES = env_int("AIKORE_NOTIFY_DISK_FREE_BYTES", 10 * 1024**3, 0)
AIKORE_NOTIFY_GPU_TEMP = env_int("AIKORE_NOTIFY_GPU_TEMP", 85, 0, 200)
AIKORE_NOTIFY_RETRIES = env_int("AIKORE_NOTIFY_RETRIES", 5, 0, 100)
AIKORE_NOTIFY_RETRY_DELAY = env_float("AIKORE_NOTIFY_RETRY_DELAY", 10.0, 0.1)
AIKORE_NOTIFY_RATE_LIMIT = env_int("AIKORE_NOTIFY_RATE_LIMIT", 20, 1, 100_000)
AIKORE_NOTIFY_REPEAT_SECONDS = env_int("AIKORE_NOTIFY_REPEAT_SECONDS", 600, 0, 7 * 86400)
AIKORE_NOTIFY_TIMEOUT = env_float("AIKORE_NOTIFY_TIMEOUT", 10.0, 0.1)

STOCK_BLUEPRINTS_DIR = BASE_DIR / "blueprints"
CUSTOM_BLUEPRINTS_DIR = AIKORE_DATA_DIR / "custom_blueprints"
INSTANCES_DIR = AIKORE_DATA_DIR / "instances"
OUTPUTS_DIR = AIKORE_DATA_DIR / "outputs"
MODELS_DIR = AIKORE_DATA_DIR / "models"
# HOME of the instances (and their terminals), with the apps' own settings (~/.config) and whatever
# they keep there; their caches (XDG_CACHE_HOME: pip, Hugging Face, torch hub, ...) go to CACHE_DIR.
# Both in the data dir, so a re-created container keeps them.
HOME_DIR = AIKORE_DATA_DIR / "home"
AIKORE_INSTANCE_HOME = Path(env_str("AIKORE_INSTANCE_HOME", "") or HOME_DIR)
if not AIKORE_INSTANCE_HOME.is_absolute():
    raise ImproperlyConfigured(f"AIKORE_INSTANCE_HOME must be an absolute path, got {str(AIKORE_INSTANCE_HOME)!r}")
TRASH_DIR = AIKORE_DATA_DIR / "trash"
RUN_DIR = AIKORE_DATA_DIR / "run"
LOGS_DIR = AIKORE_DATA_DIR / "logs"
SUPERVISOR_SOCKET = RUN_DIR / "supervisor.sock"
SUPERVISOR_INSTANCE_CONF_DIR = AIKORE_DATA_DIR / "supervisor" / "instances"
DAPHNE_SOCKET = RUN_DIR / "daphne.sock"
EVENTS_SOCKET = RUN_DIR / "events.sock"
NGINX_DIR = AIKORE_DATA_DIR / "nginx"
# The instance terminals' tmux sockets and start specs (terminals/): the tmux servers run as the
# apps' user, which must be able to create their sockets here.
TERMINALS_DIR = AIKORE_DATA_DIR / "terminals"
# Instance environments (instances/environments.py, blueprints/functions.sh): one uv cache for all
# instances, on the same filesystem as instances/ so uv hard-links packages instead of copying.
CACHE_DIR = AIKORE_DATA_DIR / "cache"
UV_CACHE_DIR = CACHE_DIR / "uv"
UV_PYTHON_INSTALL_DIR = CACHE_DIR / "python"
# The apps' TMPDIR when they run as a user of their own (created then only): /tmp is shared with the
# other users of the host, whose leftovers there (say a /tmp/gradio that root's apps made) the apps'
# user could not write to. Emptied at every start of the stack, as /tmp is at boot.
APPS_TMP_DIR = AIKORE_DATA_DIR / "tmp"


def _find_uv() -> str:
    """The uv binary shipped by the `uv` wheel in AiKore's own venv (requirements.txt), else PATH."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv") or "uv"


AIKORE_UV = env_str("AIKORE_UV", "") or _find_uv()
# Where the PyTorch wheels of each variant live: <base>/<variant> (cpu, cu128, ...). Tests point it
# at a local index of tiny fake wheels.
AIKORE_TORCH_INDEX_BASE = env_str("AIKORE_TORCH_INDEX_BASE", "https://download.pytorch.org/whl").rstrip("/")
if not re.fullmatch(r"(https?|file)://[A-Za-z0-9._~:/%@+-]+", AIKORE_TORCH_INDEX_BASE):
    raise ImproperlyConfigured(f"AIKORE_TORCH_INDEX_BASE must be an http(s):// or file:// URL, got {AIKORE_TORCH_INDEX_BASE!r}")
# nginx (proxy/): the binary, and how long nginx may answer instance auth checks from its own
# cache (0 = ask Django on every request; a logout takes effect within this many seconds).
AIKORE_NGINX = env_str("AIKORE_NGINX", "") or shutil.which("nginx") or "/usr/sbin/nginx"
# Threads serving Django's HTTP requests in the web process (aikore_site/handler.py), besides the
# two that serve only the hottest never-blocking reads (auth checks, the instance list): enough
# for several slow requests (deleting running instances, supervisord calls) at once.
AIKORE_HTTP_THREADS = env_int("AIKORE_HTTP_THREADS", 8, 1, 64)
AIKORE_AUTH_CACHE_SECONDS = env_int("AIKORE_AUTH_CACHE_SECONDS", 2, 0, 3600)
# App-access hand-off (accounts/appaccess.py): how long a one-time code may wait to be redeemed.
AIKORE_HANDOFF_SECONDS = env_int("AIKORE_HANDOFF_SECONDS", 60, 5, 3600)

# Persistent mode (instances/desktop.py): each instance's desktop is an Xvnc on a display number
# from this range (checked against /tmp/.X<n>-lock and /tmp/.X11-unix/X<n>; its VNC port comes from
# AIKORE_INSTANCE_PORT_RANGE), its first screen size, and the programs it runs. One websockify
# serves every desktop (docker/supervisord.conf) on a unix socket, nginx adds the instance's token.
_display_range = env_str("AIKORE_DISPLAY_RANGE", "100-999").strip()
_display_match = re.fullmatch(r"(\d{1,5})\s*-\s*(\d{1,5})", _display_range)
if not _display_match or not 1 <= int(_display_match.group(1)) <= int(_display_match.group(2)) <= 32767:
    raise ImproperlyConfigured(f"AIKORE_DISPLAY_RANGE must look like 100-999 (1..32767), got {_display_range!r}")
AIKORE_DISPLAY_RANGE = (int(_display_match.group(1)), int(_display_match.group(2)))
AIKORE_DESKTOP_GEOMETRY = env_str("AIKORE_DESKTOP_GEOMETRY", "1280x800").strip()
if not re.fullmatch(r"\d{3,4}x\d{3,4}", AIKORE_DESKTOP_GEOMETRY):
    raise ImproperlyConfigured(f"AIKORE_DESKTOP_GEOMETRY must look like 1280x800, got {AIKORE_DESKTOP_GEOMETRY!r}")
AIKORE_XVNC = env_str("AIKORE_XVNC", "") or shutil.which("Xvnc") or "/usr/bin/Xvnc"
AIKORE_CHROMIUM = env_str("AIKORE_CHROMIUM", "") or shutil.which("chromium") or "/usr/bin/chromium"
WEBSOCKIFY_SOCKET = RUN_DIR / "websockify.sock"
# token -> 127.0.0.1:<VNC port> for every running desktop, rendered from the database.
DESKTOP_TOKENS_FILE = RUN_DIR / "desktop-tokens"

# Login throttling (accounts/throttle.py): failures from one client address before delays start, the
# longest delay, and how long attempts are kept in the admin's record.
AIKORE_LOGIN_FREE_FAILURES = env_int("AIKORE_LOGIN_FREE_FAILURES", 3, 1, 1000)
AIKORE_LOGIN_MAX_DELAY = env_int("AIKORE_LOGIN_MAX_DELAY", 60, 1, 86400)
AIKORE_LOGIN_ADDRESS_FREE_FAILURES = env_int("AIKORE_LOGIN_ADDRESS_FREE_FAILURES", 20, 1, 100000)
AIKORE_LOGIN_RECORD_DAYS = env_int("AIKORE_LOGIN_RECORD_DAYS", 30, 1, 3650)

# /api/health and the dashboard warn when the data dir's filesystem has less free space than this.
AIKORE_DISK_WARN_MB = env_int("AIKORE_DISK_WARN_MB", 1024, 0, 10**9)
# Space kept free for AiKore's own writes when the disk fills up (aikore_site/disk.py); 0: none.
AIKORE_DISK_RESERVE_MB = env_int("AIKORE_DISK_RESERVE_MB", 16, 0, 10**6)

for _dir in (AIKORE_DATA_DIR, CUSTOM_BLUEPRINTS_DIR, INSTANCES_DIR, TRASH_DIR, RUN_DIR, LOGS_DIR,
             SUPERVISOR_INSTANCE_CONF_DIR, NGINX_DIR):
    ensure_dir(_dir, None, AIKORE_FILE_OWNER)
for _dir in (OUTPUTS_DIR, MODELS_DIR, CACHE_DIR, UV_CACHE_DIR, UV_PYTHON_INSTALL_DIR, HOME_DIR, TERMINALS_DIR,
             *([APPS_TMP_DIR] if AIKORE_APP_USER else [])):
    ensure_dir(_dir, SHARED_DIR_MODE, AIKORE_FILE_OWNER)

# The marker in the environment of every process of this stack (aikore_site/procs.py): derived
# from the data dir, so stacks on one machine never end each other's processes.
AIKORE_STACK_ID = stack_id_for(AIKORE_DATA_DIR)
# A cgroup v2 per instance where the kernel and permissions allow (aikore_site/procs.py); 0: never.
AIKORE_CGROUPS = env_bool("AIKORE_CGROUPS", True)
# Not with an apps' user of its own: its launcher could not move itself into a cgroup AiKore made.
AIKORE_CGROUP_ROOT = cgroup_root() if AIKORE_CGROUPS and not AIKORE_APP_USER else None
# Present while the stack shuts down: exits are then not crashes and nothing new starts.
SHUTDOWN_FLAG = RUN_DIR / "shutting-down"

# --- Django ----------------------------------------------------------------------------------

SECRET_KEY = os.environ.get("AIKORE_SECRET_KEY") or _secret_from_file(AIKORE_DATA_DIR / "secret_key")
DEBUG = env_bool("AIKORE_DEBUG", False)
ALLOWED_HOSTS = ["*"]  # AiKore sits behind its own nginx; Host checks add nothing for one port.

# No "daphne" app: AiKore's web process runs daphne itself (aikore_site/webserver.py), and the app
# would load Twisted (~27 MiB) into the worker and the watcher too, only to replace `runserver`.
INSTALLED_APPS = [
    "aikore_site.apps.AiKoreAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "huey.contrib.djhuey",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "accounts",
    "instances",
    "monitoring",
    "proxy",
    "notifications",
    "terminals",
]

MIDDLEWARE = [
    "aikore_site.middleware.OriginGuard",
    "django.middleware.security.SecurityMiddleware",
    "aikore_site.middleware.SecurityHeaders",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Roles (accounts/roles.py): viewer, operator, admin as Django groups; the backend gives the admin
# role every model permission (the admin site) and caps a token's user at the token's role.
AUTHENTICATION_BACKENDS = ["accounts.roles.RoleBackend"]

ROOT_URLCONF = "aikore_site.urls"
ASGI_APPLICATION = "aikore_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=600)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": AIKORE_DATA_DIR / "aikore.db",
            # WAL lets the web, the worker and the watcher read while one of them writes;
            # IMMEDIATE transactions take the write lock up front so racing writers queue on
            # busy_timeout instead of failing with "database is locked" mid-transaction.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=16777216;"
                ),
            },
            "TEST": {"NAME": str(AIKORE_DATA_DIR / "aikore.db")},
            # Every process's threads are long-lived (web request pools, the worker's, the
            # watcher): keeping a thread's connection open saves a connect + PRAGMAs + close per
            # request or job, which was a third of the cost of GET /api/instances. Idle
            # connections hold no lock, so WAL checkpoints still complete; journal_size_limit
            # (in init_command) truncates the WAL file back after a burst of writes.
            "CONN_MAX_AGE": None,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# TZ (the container's, as linuxserver.io images take it) when it names a zone of the system: Django
# sets its processes' TZ to TIME_ZONE, so AiKore's logs and pages would show UTC whatever TZ says.
# Stored times are UTC either way (USE_TZ).
_tz = os.environ.get("TZ", "").removeprefix(":")
TIME_ZONE = (_tz if re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", _tz)
             and Path("/usr/share/zoneinfo", _tz).is_file() else "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = AIKORE_DATA_DIR / "static"
STATICFILES_DIRS = [d for d in (BASE_DIR / "static", BASE_DIR / "node_modules") if d.exists()]

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_NAME = "aikore_session"
# Sessions are read on every API call and every nginx auth_request: keep them in the process's
# cache in front of the database (daphne is one process, so the cache is coherent).
# (accounts/sessions.py: Django's cached_db, which keeps a session in memory when the disk is full)
SESSION_ENGINE = "accounts.sessions"
CSRF_COOKIE_NAME = "aikore_csrftoken"
# Browsers do not isolate cookies by port: every AiKore cookie is sent to the apps port and the
# public ports too (nginx strips them before an app sees them), and must never be readable by an
# app's scripts. The dashboard reads its CSRF token from the page instead.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = AIKORE_SECURE_COOKIES
CSRF_TRUSTED_ORIGINS = [o for o in [AIKORE_PUBLIC_URL, *AIKORE_CSRF_TRUSTED_ORIGINS] if o]
# The scheme reaches Django in the request's ASGI scope: nginx sends X-Forwarded-Proto, its own
# scheme unless a trusted proxy said https (AIKORE_TRUSTED_PROXIES), and daphne (--proxy-headers)
# puts it in the scope. Nothing else can set it: daphne's socket is nginx's alone (0600).
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
# The app-access credential (accounts/appaccess.py), valid on app origins only.
APP_COOKIE_NAME = "aikore_app"
# Control-plane pages are never framed by anything but themselves (an app must not frame the
# dashboard); the dashboard frames the app origin, which is not restricted here. The CSP's
# frame-ancestors (aikore_site.middleware.SecurityHeaders) says the same to current browsers.
X_FRAME_OPTIONS = "SAMEORIGIN"
# The device cookie of the login throttle (accounts/throttle.py): a browser that signed in before.
DEVICE_COOKIE_NAME = "aikore_device"
DEVICE_COOKIE_DAYS = 365

# Content-Security-Policy (django-csp): no inline script without the page's nonce, nothing from
# another origin but the app frames the dashboard shows. Styles may be inline (the admin's and
# the editor's); frame-ancestors differs by origin (aikore_site.middleware.SecurityHeaders).
from csp.constants import NONCE, NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        # The View tab frames instance apps, which live on other origins (ports or host names).
        "frame-src": [SELF, "http:", "https:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [SELF],
    },
}
# Features no AiKore page uses; an app framed by the dashboard can't use them either (open it in a
# tab of its own for that).
PERMISSIONS_POLICY = ("camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), hid=(), "
                      "bluetooth=(), midi=(), display-capture=()")

# --- Huey: jobs ------------------------------------------------------------------------------

if AIKORE_REDIS_URL:
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": "aikore",
        "url": AIKORE_REDIS_URL,
        "immediate": False,
        "consumer": {"workers": 8, "worker_type": "thread"},
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "aikore",
        "filename": str(AIKORE_DATA_DIR / "huey.db"),
        "immediate": False,
        # SqliteHuey polls: a short initial delay and a low cap keep job pickup in the tens of
        # milliseconds (DESIGN: default max_delay 10 s made a lone job wait 9.5 s).
        "consumer": {
            "workers": 8,
            "worker_type": "thread",
            "initial_delay": 0.01,
            "backoff": 1.15,
            "max_delay": 0.1,
            "check_worker_health": True,
        },
    }

# --- Channels --------------------------------------------------------------------------------

if AIKORE_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [AIKORE_REDIS_URL]},
        }
    }
else:
    # One daphne process: the in-memory layer serves its consumers; the worker and the watcher
    # reach it through aikore_site.events (a unix datagram socket bridge).
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "huey": {"level": "WARNING"},
        "apprise": {"level": "WARNING"},
    },
}
