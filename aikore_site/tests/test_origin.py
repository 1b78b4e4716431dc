"""The websocket origin check (aikore_site/origin.py): the Origin must be the control plane's own,
scheme, host and port, as Django's CSRF check compares a page's origin. An app's page (the apps
port, a public port, a host name under the apps domain) never passes, whatever Host says: cookies
ignore ports, so an app is "same site" as the dashboard and its websocket carries the session."""

from __future__ import annotations

import pytest
from django.test import override_settings

from aikore_site.origin import same_origin

APPS_PORT = 9001


def scope(origin: str | None, host: str, proto: str = "http") -> dict:
    headers = [(b"host", host.encode()), (b"x-forwarded-proto", proto.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "headers": headers}


@pytest.fixture(autouse=True)
def ports():
    with override_settings(AIKORE_PORT=9000, AIKORE_APPS_PORT=APPS_PORT, AIKORE_PUBLIC_PORT_RANGE=(9002, 9020),
                           AIKORE_APPS_DOMAIN="", AIKORE_PUBLIC_URL="", CSRF_TRUSTED_ORIGINS=[]):
        yield


@pytest.mark.parametrize(("origin", "host", "proto", "allowed"), [
    ("http://aikore.example:9000", "aikore.example:9000", "http", True),
    ("http://127.0.0.1:9000", "127.0.0.1:9000", "http", True),
    ("http://[::1]:9000", "[::1]:9000", "http", True),
    ("https://aikore.example", "aikore.example", "https", True),  # the control plane on 443
    ("http://aikore.example", "aikore.example", "http", True),  # ... or on 80
    ("https://aikore.example", "aikore.example:443", "https", True),  # a proxy that names the default port
    # A port-less Host is the scheme's default port, never "any port of that host name":
    ("https://aikore.example:9001", "aikore.example", "https", False),  # the apps port
    ("https://aikore.example:9005", "aikore.example", "https", False),  # a public port
    ("https://aikore.example:7777", "aikore.example", "https", False),  # anything else on that host
    ("http://aikore.example:9001", "aikore.example", "http", False),
    ("http://aikore.example", "aikore.example", "https", False),  # the other scheme is another origin
    # The apps port and the public ports are refused even when Host names them.
    ("http://aikore.example:9001", "aikore.example:9001", "http", False),
    ("http://aikore.example:9010", "aikore.example:9010", "http", False),
    ("http://evil.example:9000", "aikore.example:9000", "http", False),
    ("http://aikore.example:9000", "aikore.example:9001", "http", False),
    ("null", "aikore.example:9000", "http", False),
    ("http://aikore.example:99999", "aikore.example:9000", "http", False),
    ("ftp://aikore.example:9000", "aikore.example:9000", "http", False),
    (None, "aikore.example:9000", "http", False),
])
def test_same_origin(origin, host, proto, allowed) -> None:
    assert same_origin(scope(origin, host, proto)) is allowed


def test_host_names_under_the_apps_domain_are_app_origins() -> None:
    with override_settings(AIKORE_APPS_DOMAIN="apps.example"):
        assert same_origin(scope("https://apps.example", "apps.example", "https"))  # the dashboard's
        assert not same_origin(scope("https://comfy.apps.example", "comfy.apps.example", "https"))


def test_behind_a_public_url_only_the_trusted_origins_pass() -> None:
    trusted = ["https://aikore.example", "https://second.example:8443"]
    with override_settings(AIKORE_PUBLIC_URL=trusted[0], CSRF_TRUSTED_ORIGINS=trusted):
        assert same_origin(scope("https://aikore.example", "aikore.example", "https"))
        assert same_origin(scope("https://second.example:8443", "whatever", "https"))
        # The Host no longer decides: a proxy may have dropped its port.
        assert not same_origin(scope("https://aikore.example:9000", "aikore.example:9000", "https"))
        assert not same_origin(scope("https://aikore.example:9001", "aikore.example", "https"))
        assert not same_origin(scope("http://aikore.example", "aikore.example", "https"))
