"""The nginx configuration, rendered from the database by one function: render_nginx_config().

Only these kinds of value reach the file: slugs ([a-z0-9-]), integers (ports), origins
(scheme://host[:port], validated like instances.validators.validate_allowed_origins), the apps
domain, and paths/addresses already checked by settings.py. Each is checked again here (defence in depth: a slug written to the
database by something other than the validators must not become an nginx directive); an instance
that fails the check is left out of the config and logged, the rest of the proxy keeps working.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import pwd
import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.template import engines
from django.template.loader import get_template

from instances.blueprints import PROXY_MODES
from instances.models import ACTIVE_STATUSES, Instance
from instances.validators import ORIGIN_RE

log = logging.getLogger(__name__)

TEMPLATE_NAME = "proxy/nginx.conf"
# Rendered in place of the generation, then replaced by a hash of the whole text.
GENERATION_PLACEHOLDER = "@AIKORE_GENERATION@"
GENERATION_RE = re.compile(r'location = /_aikore/generation \{(?:[^{}]|\{[^{}]*\})*return 200 "([0-9a-f]+)";')
SAFE_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
SAFE_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
SAFE_WORD = re.compile(r"[A-Za-z0-9_.-]+")
WORKER_SHUTDOWN_TIMEOUT = 3600  # s: websockets to instances survive reloads for up to an hour
# How many aikore_* cookies nginx can cut out of a request before giving up and sending the app
# no cookies at all (a browser holds three: session, CSRF, app access; more are planted copies).
COOKIE_STRIP_STEPS = 6
SAFE_DOMAIN = re.compile(r"(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class UnsafeValue(ValueError):
    """A value that must never reach the nginx config (it could be read as syntax)."""


@dataclass(frozen=True)
class ProxiedInstance:
    slug: str
    port: int
    public_port: int | None
    mode: str = "strip"  # instances.blueprints.PROXY_MODES
    allowed_origins: tuple[str, ...] = ()
    instance_id: int = 0
    desktop: bool = False  # its desktop runs (persistent mode): viewer and websockify locations
    kiosk_port: int | None = None  # the loopback listener of its desktop's kiosk browser

    @property
    def token(self) -> str:
        """websockify's token for its desktop (instances/desktop.py)."""
        return f"instance-{self.instance_id}"

    @property
    def url_prefix(self) -> str:
        return f"/instance/{self.slug}"

    @property
    def port_origin(self) -> str:
        return f"port:{self.public_port}"

    @property
    def host_origin(self) -> str:
        return f"host:{self.slug}"


def safe_slug(value: object) -> str:
    if not isinstance(value, str) or not SAFE_SLUG.fullmatch(value):
        raise UnsafeValue(f"not a slug: {value!r}")
    return value


def safe_port(value: object) -> int:
    # bool is an int subclass; True is not a port.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise UnsafeValue(f"not a port: {value!r}")
    return value


def safe_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsafeValue(f"not an id: {value!r}")
    return value


def safe_path(value: object) -> str:
    text = str(value)
    if not SAFE_PATH.fullmatch(text):
        raise UnsafeValue(f"not a plain absolute path: {text!r}")
    return text


def safe_word(value: object) -> str:
    text = str(value)
    if not SAFE_WORD.fullmatch(text):
        raise UnsafeValue(f"not a plain word: {text!r}")
    return text


def safe_origin(value: object) -> str:
    text = str(value)
    match = ORIGIN_RE.fullmatch(text)
    if not match or (match.group("port") and not 1 <= int(match.group("port")) <= 65535):
        raise UnsafeValue(f"not an origin: {text!r}")
    return text


def safe_domain(value: object) -> str:
    text = str(value)
    if not SAFE_DOMAIN.fullmatch(text):
        raise UnsafeValue(f"not a domain: {text!r}")
    return text


def safe_network(value: object) -> str:
    """An IP address or network (AIKORE_TRUSTED_PROXIES), as nginx's set_real_ip_from and geo take it."""
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise UnsafeValue(f"not an IP network: {value!r}") from None


def safe_mode(value: object) -> str:
    if value not in PROXY_MODES:
        raise UnsafeValue(f"not a proxy mode: {value!r}")
    return str(value)


def listen_address(bind: str, port: int) -> str:
    """AIKORE_BIND plus a port, as nginx's listen wants it ("[::1]:9000" for IPv6)."""
    if not re.fullmatch(r"[0-9A-Fa-f.:\[\]]+|localhost|\*", bind):
        raise UnsafeValue(f"not an address: {bind!r}")
    if ":" in bind and not bind.startswith("["):
        bind = f"[{bind}]"
    return f"{bind}:{safe_port(port)}"


def local_address(bind: str) -> str:
    """Where this machine reaches a server listening on AIKORE_BIND (/api/health asks nginx there)."""
    bind = bind.strip("[]")
    if bind in ("", "*", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    return "::1" if bind == "::" else bind


def generation_source(bind: str) -> str:
    """The address /api/health's connection to nginx comes from, when it is not a loopback one:
    a connection to a LAN address of this machine comes from that address, which nginx must let
    read /_aikore/generation too ("" when loopback already covers it)."""
    try:
        address = ipaddress.ip_address(local_address(bind))
    except ValueError:
        raise UnsafeValue(f"not an address: {bind!r}") from None
    return "" if address.is_loopback else str(address)


def proxied_instances() -> list[ProxiedInstance]:
    """Instances that run or are about to (a crash restart keeps its location: no churn)."""
    rows = (
        Instance.objects.filter(Q(want_running=True) | Q(status__in=ACTIVE_STATUSES))
        .exclude(port__isnull=True)
        .order_by("slug")
    )
    result = []
    for instance in rows:
        try:
            kind = instance.desktop_kind()
            has_desktop = bool(kind) and instance.vnc_port is not None and instance.vnc_display is not None
            result.append(ProxiedInstance(
                safe_slug(instance.slug), safe_port(instance.port),
                safe_port(instance.public_port) if instance.public_port else None,
                safe_mode(instance.proxy_mode()),
                tuple(safe_origin(o) for o in instance.allowed_origins.split()),
                instance_id=safe_id(instance.pk),
                desktop=has_desktop,
                kiosk_port=safe_port(instance.kiosk_port) if has_desktop and kind == "browser" and instance.kiosk_port
                else None,
            ))
        except UnsafeValue as exc:
            log.error("instance left out of the nginx config: %s", exc)
    return result


def _run_as_user() -> str | None:
    """As root, name the current user so workers are not demoted to nobody; otherwise nginx
    cannot switch users anyway (and would warn), so say nothing."""
    if os.geteuid() != 0:
        return None
    return safe_word(pwd.getpwuid(os.geteuid()).pw_name)


def template_source() -> str:
    """The text of the app's template (tests derive broken variants from it)."""
    return (settings.BASE_DIR / "proxy" / "templates" / TEMPLATE_NAME).read_text()


def render_nginx_config(source: str | None = None) -> str:
    """The complete nginx.conf for the current database state. `source` replaces the app's
    template text (tests use it to feed a broken template to the reload path)."""
    instances = proxied_instances()
    # A public port outside the configured range (or with the range unset) is no longer served.
    low, high = settings.AIKORE_PUBLIC_PORT_RANGE or (1, 0)
    public = [i for i in instances if i.public_port and low <= i.public_port <= high]
    public_ports = {i.slug for i in public}
    domain = safe_domain(settings.AIKORE_APPS_DOMAIN) if settings.AIKORE_APPS_DOMAIN else ""
    # An app that needs an origin of its own is not served under the prefix when it has one (the
    # apps port then sends its users there); without one, the prefix is better than nothing.
    on_apps_port = [i for i in instances if i.mode != "origin" or not (domain or i.slug in public_ports)]
    chain = [f"aikore_cookie_{n}" for n in range(COOKIE_STRIP_STEPS + 1)]
    chain[0] = "http_cookie"
    bind = settings.AIKORE_BIND
    context = {
        "run_as_user": _run_as_user(),
        "worker_processes": "auto",
        "worker_shutdown_timeout": WORKER_SHUTDOWN_TIMEOUT,
        "nginx_dir": safe_path(settings.NGINX_DIR),
        "daphne_socket": safe_path(settings.DAPHNE_SOCKET),
        "static_root": safe_path(settings.STATIC_ROOT),
        "app_cookie": safe_word(settings.APP_COOKIE_NAME),
        "cookie_chain": list(zip(chain, chain[1:], strict=False)),
        "cookie_last": chain[-1],
        "auth_cache_seconds": int(settings.AIKORE_AUTH_CACHE_SECONDS),
        "listen": listen_address(bind, settings.AIKORE_PORT),
        "apps_listen": listen_address(bind, settings.AIKORE_APPS_PORT),
        "bind": listen_address(bind, 1).rsplit(":", 1)[0],
        "generation_source": generation_source(bind),
        "instances": instances,
        "apps_instances": on_apps_port,
        "public_instances": public,
        "apps_domain": domain,
        "apps_domain_re": domain.replace(".", "\\."),
        "host_instances": instances if domain else [],
        "kiosk_instances": [i for i in instances if i.kiosk_port],
        "websockify_socket": safe_path(settings.WEBSOCKIFY_SOCKET),
        "trusted_proxies": [safe_network(n) for n in settings.AIKORE_TRUSTED_PROXIES],
        "generation": GENERATION_PLACEHOLDER,
    }
    template = get_template(TEMPLATE_NAME) if source is None else engines["django"].from_string(source)
    # Template tags leave runs of blank lines behind: keep the file readable.
    text = re.sub(r"\n(?:[ \t]*\n)+", "\n\n", template.render(context))
    # The generation names the content: the same database state renders the same file.
    return text.replace(GENERATION_PLACEHOLDER, hashlib.sha256(text.encode()).hexdigest()[:16])


def config_generation(text: str) -> str | None:
    """The generation a rendered config answers at /_aikore/generation."""
    match = GENERATION_RE.search(text)
    return match.group(1) if match else None
