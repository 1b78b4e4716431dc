"""AiKore's origins, named without host names.

The control plane lives on AIKORE_PORT; apps on the apps port (AIKORE_APPS_PORT, all instances
under /instance/<slug>/), on a public port each (AIKORE_PUBLIC_PORT_RANGE) and, with
AIKORE_APPS_DOMAIN, on <slug>.<domain>. An origin is named by an id:

    apps            the apps port
    port:<n>        a public port
    host:<slug>     a host name under AIKORE_APPS_DOMAIN

Absolute URLs are never built from a request's Host header: the server deals in ids and paths,
and the browser combines them with its own location (static/aikore/origins.js): same scheme and
host name, the configured port; for host names the configured domain, same scheme and port (the
dashboard is then at <domain> itself). With AIKORE_PUBLIC_URL (behind a TLS proxy) the control
plane is that URL and app origins take its scheme.
"""

from __future__ import annotations

import re

from django.conf import settings

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
INSTANCE_PATH_RE = re.compile(r"/instance/(?P<slug>[a-z0-9][a-z0-9-]{0,63})(?:/|$)")


def parse_origin(value: object) -> str | None:
    """The origin id if `value` names one this configuration serves, else None."""
    if not isinstance(value, str):
        return None
    if value == "apps":
        return value
    kind, _, rest = value.partition(":")
    if kind == "port" and rest.isdigit() and len(rest) <= 5:
        low, high = settings.AIKORE_PUBLIC_PORT_RANGE or (1, 0)
        return value if low <= int(rest) <= high and str(int(rest)) == rest else None
    if kind == "host" and settings.AIKORE_APPS_DOMAIN and SLUG_RE.fullmatch(rest):
        return value
    return None


def request_origin(request) -> str | None:
    """The app origin nginx says this request came to (None on the control plane)."""
    return parse_origin(request.headers.get("X-AiKore-Origin"))


def safe_next(value: object, default: str = "/") -> str:
    """A path on the same origin: '/...' but never '//host' or a backslash trick."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 for c in value) or len(value) > 4000:
        return default
    return value


def slug_from_path(path: str) -> str | None:
    match = INSTANCE_PATH_RE.match(path or "")
    return match.group("slug") if match else None


def client_config() -> dict:
    """What the browser needs to find each origin (see static/aikore/origins.js)."""
    public = settings.AIKORE_PUBLIC_URL
    return {
        "control_port": settings.AIKORE_PORT,
        "apps_port": settings.AIKORE_APPS_PORT,
        "apps_domain": settings.AIKORE_APPS_DOMAIN or None,
        # Behind a TLS proxy: the control plane's own URL, and the scheme of every app origin.
        "control_url": public or None,
        "scheme": public.split("://", 1)[0] + ":" if public else None,
    }


def control_plane_sources() -> list[str]:
    """CSP sources naming the control plane (the only page that may frame AiKore's app-origin
    pages), without knowing the host name the browser uses: its public URL when configured, else
    any host on the control port, plus the apps domain itself when host names are used."""
    if settings.AIKORE_PUBLIC_URL:
        sources = [settings.AIKORE_PUBLIC_URL]
    else:
        sources = [f"*:{settings.AIKORE_PORT}"]
    if settings.AIKORE_APPS_DOMAIN:
        sources.append(f"{settings.AIKORE_APPS_DOMAIN}:*")
    return sources
