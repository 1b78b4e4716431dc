"""Apprise URLs as AiKore handles them: split a list, validate one, and show one without its
secrets. Plain functions (no models): the settings use them before Django's apps are loaded.

A target URL often *is* the secret (a Telegram bot token, a Discord webhook token, an ntfy topic),
so a masked URL keeps only the scheme and, when it names a real host (a DNS name with a dot, an IP
address, localhost), that host and port: ``json://127.0.0.1:8080/…``, ``tgram://…``.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z][A-Za-z0-9-]{0,62}$")


def split_urls(raw: str) -> list[str]:
    """AIKORE_NOTIFY_URLS: URLs separated by commas and/or whitespace (as Apprise's own CLI takes)."""
    return [part for part in re.split(r"[\s,]+", raw) if part]


def validate_url(url: object) -> str | None:
    """None when Apprise can notify through `url`; else a message that reveals no secret."""
    if not isinstance(url, str) or not url.strip():
        return "A target URL is required, e.g. json://host:port/ or ntfy://topic."
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        return f"A target URL is at most {MAX_URL_LENGTH} characters."
    if any(ord(ch) < 32 or ch.isspace() for ch in url):
        return "A target URL may not contain spaces or control characters."
    match = _SCHEME_RE.match(url)
    if not match:
        return "Not an Apprise URL: it must look like scheme://..., e.g. json://host:port/ or ntfy://topic."
    import apprise

    if apprise.Apprise.instantiate(url) is None:
        scheme = match.group(1).lower()
        return (f"Apprise cannot use this {scheme}:// URL (unknown service or missing parts); "
                "see the Apprise documentation for the service's URL format.")
    return None


def _is_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.match(host))


def mask_url(url: str) -> str:
    """Scheme, plus host and port when they name a machine; everything else becomes '…'."""
    match = _SCHEME_RE.match(url or "")
    if not match:
        return "…"
    scheme = match.group(1).lower()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{scheme}://…"
    if not host or not _is_host(host):
        return f"{scheme}://…"
    shown = f"[{host}]" if ":" in host else host
    if port:
        shown += f":{port}"
    return f"{scheme}://{shown}/…"


def scrub_secrets(text: str, url: str) -> str:
    """`text` (a delivery's error: a plugin's exception or log lines, which may quote the request
    URL: a bot token in a path, a password) without any part of `url` that mask_url would hide."""
    match = _SCHEME_RE.match(url or "")
    if not text or not match:
        return text
    shown = mask_url(url)
    from urllib.parse import unquote

    parts = {p for p in re.split(r"[/:@?&=#;,+]+", url[match.end():]) if len(p) >= 6}  # a port has 5 digits at most
    for part in sorted(parts | {unquote(p) for p in parts}, key=len, reverse=True):
        if part not in shown:
            text = text.replace(part, "…")
    return text
