"""Same-origin check for websockets: the browser's Origin must name the host the page came from.
(Channels' AllowedHostsOriginValidator only checks ALLOWED_HOSTS, which is '*' behind our nginx.)
A script authenticating with a Bearer token sends no Origin (browsers always do, and cannot set
Authorization on a websocket): that is allowed, and the token decides."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_header(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1").lower()
    return None


def _header(scope: dict, wanted: bytes) -> str | None:
    value = None
    for name, raw in scope.get("headers", []):
        if name == wanted:
            value = raw.decode("latin-1")
    return value


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host name, port) of a configured origin, the default port made explicit."""
    parsed = urlsplit(origin)
    try:
        port = parsed.port
    except ValueError:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return None
    return parsed.scheme, parsed.hostname, port or DEFAULT_PORTS[parsed.scheme]


def _is_app_origin(hostname: str, port: int) -> bool:
    """An origin AiKore serves apps on: the apps port, a public port, a host name under the apps
    domain. Same site as the dashboard (cookies ignore ports), never the control plane."""
    low, high = settings.AIKORE_PUBLIC_PORT_RANGE or (1, 0)
    domain = settings.AIKORE_APPS_DOMAIN
    return (port == settings.AIKORE_APPS_PORT or low <= port <= high
            or bool(domain and hostname.endswith("." + domain)))


def same_origin(scope: dict) -> bool:
    """Whether the websocket's Origin is the control plane's own, compared as Django's CSRF check
    compares a page's origin (scheme, host and port) and never an app origin. Behind a TLS proxy
    (AIKORE_PUBLIC_URL) the Host may have lost its port on the way: only the trusted origins
    (CSRF_TRUSTED_ORIGINS: the public URL and AIKORE_CSRF_TRUSTED_ORIGINS) are accepted then."""
    origin = _header(scope, b"origin")
    key = _origin_key(origin) if origin else None
    if key is None:
        return False
    origin_scheme, origin_host, origin_port = key
    if _is_app_origin(origin_host, origin_port):
        return False
    if key in {_origin_key(o) for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    if settings.AIKORE_PUBLIC_URL:
        return False
    host = _host_header(scope)
    if not host:
        return False
    try:
        requested = urlsplit(f"//{host}")
        host_port = requested.port
    except ValueError:
        return False
    # nginx always sets X-Forwarded-Proto (its own scheme, or a trusted proxy's https).
    scheme = (_header(scope, b"x-forwarded-proto") or "http").strip().lower()
    if scheme not in DEFAULT_PORTS:
        return False
    # A Host without a port means the scheme's default port: never "any port of that host".
    return (origin_scheme == scheme and origin_host == requested.hostname
            and origin_port == (host_port or DEFAULT_PORTS[scheme]))


def bearer_from_scope(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _has_origin(scope: dict) -> bool:
    return any(name == b"origin" for name, _ in scope.get("headers", []))


class SameOriginValidator:
    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        script = not _has_origin(scope) and bearer_from_scope(scope) is not None
        if scope["type"] == "websocket" and not script and not same_origin(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
