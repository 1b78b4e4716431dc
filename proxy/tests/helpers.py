"""Clients for the live stack's origins: the control plane with a session, and app origins with an
app-access credential obtained through the real hand-off (control-plane page, then redeem)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from django.conf import settings
from django.test import Client

CODE_RE = re.compile(r'id="aikore-code" type="application/json">([^<]+)<')


def main_url(path: str = "") -> str:
    return f"http://127.0.0.1:{settings.AIKORE_PORT}{path}"


def apps_url(path: str = "") -> str:
    return f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}{path}"


def public_url(port: int, path: str = "") -> str:
    return f"http://127.0.0.1:{port}{path}"


def session_value(user) -> str:
    django_client = Client()
    django_client.force_login(user)
    return django_client.cookies[settings.SESSION_COOKIE_NAME].value


def session_client(user) -> httpx.Client:
    """An httpx client carrying a control-plane session of `user` (sent to every port of the host,
    as a browser does)."""
    return httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session_value(user)}, timeout=30)


def handoff_code(client: httpx.Client, origin: str, next_path: str = "/") -> str:
    page = client.get(main_url("/_aikore/handoff"), params={"to": origin, "next": next_path})
    assert page.status_code == 200, page.text[:500]
    return json.loads(CODE_RE.search(page.text).group(1))


def origin_base(origin: str) -> str:
    return apps_url() if origin == "apps" else public_url(int(origin.split(":")[1]))


def grant_app_access(client: httpx.Client, origin: str = "apps") -> httpx.Response:
    """The hand-off as the browser does it: the control plane issues a code, the app origin trades it
    for the app cookie (which the client keeps)."""
    code = handoff_code(client, origin)
    response = client.get(origin_base(origin) + "/_aikore/redeem", params={"code": code, "next": "/"})
    assert response.status_code == 302, response.text[:500]
    return response


@contextmanager
def app_client(user, *origins: str) -> Iterator[httpx.Client]:
    """A session client that also holds the app credential of `origins` (default: the apps port)."""
    with session_client(user) as client:
        for origin in origins or ("apps",):
            grant_app_access(client, origin)
        yield client


def routed(client: httpx.Client, url: str, ok=lambda r: r.status_code == 200) -> bool:
    try:
        return ok(client.get(url))
    except httpx.HTTPError:
        return False
