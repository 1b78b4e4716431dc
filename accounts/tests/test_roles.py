"""Roles through the live stack: every API route (taken from the API itself, so new routes are
covered) and every websocket answers 403 to a role below its own and lets the role through; tokens
act with their (capped) role; the admin site, the dashboard and app access follow the same roles."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from accounts import roles
from accounts.models import ApiToken
from aikore_site.api import api
from aikore_site.routing import websocket_urlpatterns
from proxy.tests.helpers import main_url, session_value

CSRF = "a" * 32  # a CSRF secret of our own: cookie and header agree, as the dashboard sends them
MISSING_ID = "999999"


def api_operations() -> list[tuple[str, str, str | None]]:
    """(method, concrete path, required role) of every API operation, from the API's own routers."""
    found = []
    for prefix, router in api._routers:
        for path, view in router.path_operations.items():
            for operation in view.operations:
                concrete = "/api" + re.sub(r"\{[^}]+\}", MISSING_ID, prefix + path).replace(f"{MISSING_ID}:", "")
                concrete = re.sub(r"\{(?:int|str):[^}]+\}", MISSING_ID, concrete)
                for method in operation.methods:
                    found.append((method.lower(), concrete, roles.route_level(operation.auth_callbacks)))
    return found


OPERATIONS = api_operations()


def test_every_route_names_its_role() -> None:
    assert len(OPERATIONS) >= 18
    unauthenticated = {(m, p) for m, p, level in OPERATIONS if level is None}
    assert unauthenticated == {("get", "/api/health")}
    levels = {(m, p): level for m, p, level in OPERATIONS}
    assert levels[("get", "/api/instances")] == roles.VIEWER
    assert levels[("post", f"/api/instances/{MISSING_ID}/start")] == roles.OPERATOR
    assert levels[("post", "/api/instances")] == roles.ADMIN
    assert levels[("put", f"/api/instances/{MISSING_ID}/script")] == roles.ADMIN


def test_a_route_that_names_no_role_is_admin_only() -> None:
    assert roles.route_level(api.auth) == roles.ADMIN


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    kwargs = {} if method == "get" else {"json": {}, "headers": {"X-CSRFToken": CSRF}}
    return client.request(method.upper(), main_url(path), **kwargs)


def session_client(user) -> httpx.Client:
    return httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session_value(user),
                                 settings.CSRF_COOKIE_NAME: CSRF}, timeout=30)


def sweep(client: httpx.Client, role: str | None) -> None:
    for method, path, level in OPERATIONS:
        if level is None:
            continue
        response = call(client, method, path)
        if roles.RANK[role] >= roles.RANK[level]:
            assert response.status_code not in (401, 403), (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.text)
            assert level in response.json()["detail"]


def ws_status(path: str, cookie: str | None = None, token: str | None = None) -> int:
    headers = {}
    if cookie:
        headers["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={cookie}"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    origin = None if token else f"http://127.0.0.1:{settings.AIKORE_PORT}"
    try:
        with connect(f"ws://127.0.0.1:{settings.AIKORE_PORT}{path}", additional_headers=headers, origin=origin,
                     open_timeout=10) as conn:
            conn.recv(timeout=10)
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def ws_paths() -> list[str]:
    return [p for p in (re.sub(r"<int:[^>]+>", MISSING_ID, str(u.pattern)) for u in websocket_urlpatterns())
            if p.startswith("ws/")]


@pytest.mark.stack
def test_each_role_gets_exactly_its_routes_and_403_beyond(live, viewer, operator, nobody, alice) -> None:
    for user, role in ((viewer, roles.VIEWER), (operator, roles.OPERATOR), (nobody, None)):
        with session_client(user) as client:
            sweep(client, role)
    # The admin's session is refused nothing.
    with session_client(alice) as client:
        sweep(client, roles.ADMIN)


@pytest.mark.stack
def test_tokens_act_with_their_role_capped_at_their_owners(live, alice, operator) -> None:
    _, viewer_token = ApiToken.issue(alice, "read-only dashboard", roles.VIEWER)
    with httpx.Client(headers={"Authorization": f"Bearer {viewer_token}"}, timeout=30) as client:
        sweep(client, roles.VIEWER)
    # Asked for more than its owner has, a token gets its owner's role.
    token, raw = ApiToken.issue(operator, "ci", roles.ADMIN)
    assert token.role == roles.OPERATOR
    with httpx.Client(headers={"Authorization": f"Bearer {raw}"}, timeout=30) as client:
        assert client.post(main_url(f"/api/instances/{MISSING_ID}/start")).status_code == 404
        # The owner loses the operator role: the token, checked again at use, follows.
        roles.assign(operator, roles.VIEWER)
        refused = client.post(main_url(f"/api/instances/{MISSING_ID}/start"))
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        roles.assign(operator, None)
        assert client.get(main_url("/api/instances")).status_code == 403


@pytest.mark.stack
def test_websockets_follow_the_roles(live, viewer, nobody, alice) -> None:
    paths = ws_paths()
    assert {"ws/instances/", f"ws/instances/{MISSING_ID}/logs/", "ws/system/"} <= set(paths)
    viewer_cookie, nobody_cookie = session_value(viewer), session_value(nobody)
    assert ws_status("/ws/system/", viewer_cookie) == 101
    assert ws_status("/ws/instances/", viewer_cookie) == 101
    for path in paths:
        assert ws_status("/" + path, nobody_cookie) == 403, path
        assert ws_status("/" + path) == 403, path  # anonymous
    # A script's token, without a browser's Origin: the token's role decides.
    _, viewer_token = ApiToken.issue(alice, "ws", roles.VIEWER)
    assert ws_status("/ws/system/", token=viewer_token) == 101
    assert ws_status("/ws/system/", token="aik_not-a-token") == 403
    # Unknown websocket routes are refused, not an error.
    for path in ("/ws/nope/", "/ws/instances/abc/logs/", "/ws/"):
        assert ws_status(path, viewer_cookie) == 403, path


@pytest.mark.stack
def test_admin_dashboard_and_apps_follow_the_roles(live, viewer, operator, nobody, django_user_model) -> None:
    admin_role = django_user_model.objects.create_user("carol", "", "carol-password")  # not a superuser
    roles.assign(admin_role, roles.ADMIN)
    for user in (viewer, operator, nobody):
        with session_client(user) as client:
            for path in ("/admin/", "/admin/accounts/apitoken/", "/admin/auth/user/"):
                response = client.get(main_url(path))
                assert response.status_code == 302 and "/admin/login/" in response.headers["location"], path
    with session_client(admin_role) as client:
        for path in ("/admin/", "/admin/accounts/apitoken/add/", "/admin/auth/user/", "/admin/accounts/loginattempt/"):
            assert client.get(main_url(path)).status_code == 200, path
        page = client.get(main_url("/")).text
        assert 'data-role="admin"' in page and 'id="admin-link"' in page
    with session_client(viewer) as client:
        page = client.get(main_url("/"))
        assert page.status_code == 200 and 'data-role="viewer"' in page.text and 'id="admin-link"' not in page.text
        # Viewers open apps: the hand-off issues them a code.
        assert 'id="aikore-code"' in client.get(main_url("/_aikore/handoff"), params={"to": "apps"}).text
        assert client.get(main_url("/api/docs")).status_code == 200
    with session_client(nobody) as client:
        assert client.get(main_url("/")).status_code == 403
        assert client.get(main_url("/_aikore/handoff"), params={"to": "apps"}).status_code == 403
        assert client.get(main_url("/metrics")).status_code == 403
