"""Same-origin check for websockets: the browser's Origin must name the host the page came from.
(Channels' AllowedHostsOriginValidator only checks ALLOWED_HOSTS, which is '*' behind our nginx.)
A script authenticating with a Bearer token sends no Origin (browsers always do, and cannot set
Authorization on a websocket): that is allowed, and the token decides."""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier


def _host_header(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1").lower()
    return None


def same_origin(scope: dict) -> bool:
    origin = None
    for name, value in scope.get("headers", []):
        if name == b"origin":
            origin = value.decode("latin-1")
    if not origin:
        return False
    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host = _host_header(scope)
    if not host:
        return False
    if parsed.netloc.lower() == host:
        return True
    # A proxy may drop a default port from Host; compare the host names then.
    host_name = urlsplit(f"//{host}").hostname
    return ":" not in host.rsplit("]", 1)[-1] and parsed.hostname == host_name


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
