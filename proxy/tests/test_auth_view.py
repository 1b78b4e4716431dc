"""The app-access views and service in-process (Django's test client plays nginx, which sets
X-AiKore-Origin on app origins): the hand-off, the credential's checks and revocations, the pages."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from accounts.models import AppAccess, AppHandoff
from instances.validators import validate_allowed_origins
from proxy import origins

pytestmark = pytest.mark.django_db

AUTH = "/_aikore/app/auth"
APPS = {"HTTP_X_AIKORE_ORIGIN": "apps"}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def code_for(client: Client, origin: str = "apps", next_path: str = "/") -> str:
    page = client.get("/_aikore/handoff", {"to": origin, "next": next_path})
    assert page.status_code == 200, page.content[:300]
    return json.loads(re.search(rb'id="aikore-code" type="application/json">([^<]+)<', page.content).group(1))


def redeem(client: Client, code: str, origin: str = "apps", next_path: str = "/x"):
    return client.get("/_aikore/app/redeem", {"code": code, "next": next_path},
                      HTTP_X_AIKORE_ORIGIN=origin)


def granted(user, origin: str = "apps") -> Client:
    client = logged_in(user)
    response = redeem(client, code_for(client, origin), origin)
    assert response.status_code == 302, response.content[:300]
    return client


def test_handoff_then_redeem_sets_an_httponly_app_cookie(alice) -> None:
    client = logged_in(alice)
    response = redeem(client, code_for(client, next_path="/instance/a/b?c=%2F"), next_path="/instance/a/b?c=%2F")
    assert response.status_code == 302 and response["Location"] == "/instance/a/b?c=%2F"
    cookie = response.cookies[settings.APP_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert response["Cache-Control"] == "no-store"
    assert client.get(AUTH, **APPS).status_code == 200
    assert AppAccess.objects.get().origins == "apps" and not AppHandoff.objects.exists()


def test_a_second_origin_extends_the_same_credential(alice, settings) -> None:
    settings.AIKORE_PUBLIC_PORT_RANGE = (29401, 29450)
    client = granted(alice)
    first = client.cookies[settings.APP_COOKIE_NAME].value
    assert client.get(AUTH, HTTP_X_AIKORE_ORIGIN="port:29401").status_code == 401
    assert redeem(client, code_for(client, "port:29401"), "port:29401").status_code == 302
    assert client.cookies[settings.APP_COOKIE_NAME].value == first
    assert client.get(AUTH, HTTP_X_AIKORE_ORIGIN="port:29401").status_code == 200
    assert AppAccess.objects.get().origins == "apps port:29401"


@pytest.mark.parametrize("origin", [None, "", "port:1", "port:029401", "host:x", "apps ", "APPS"])
def test_unknown_origins_are_refused(alice, origin, settings) -> None:
    settings.AIKORE_PUBLIC_PORT_RANGE = (29401, 29450)
    client = granted(alice)
    headers = {} if origin is None else {"HTTP_X_AIKORE_ORIGIN": origin}
    assert client.get(AUTH, **headers).status_code in (401, 404)
    assert logged_in(alice).get("/_aikore/handoff", {"to": origin or ""}).status_code == 400


def test_codes_are_one_time_short_lived_and_for_their_session(alice, bob) -> None:
    client = logged_in(alice)
    code = code_for(client)
    assert redeem(client, code).status_code == 302
    assert redeem(client, code).status_code == 403
    # Expired.
    code = code_for(client)
    AppHandoff.objects.update(created_at=timezone.now() - timedelta(seconds=settings.AIKORE_HANDOFF_SECONDS + 1))
    assert redeem(client, code).status_code == 403
    # Another browser (another session, or none) cannot redeem a port-origin code.
    code = code_for(client)
    assert redeem(logged_in(bob), code).status_code == 403
    assert redeem(Client(), code_for(client)).status_code == 403
    # Garbage.
    for junk in ("", "x", "a" * 500, "' OR 1=1 --"):
        assert redeem(client, junk).status_code == 403


def test_duplicate_cookies_any_valid_one_counts_and_planted_ones_alone_do_not(alice) -> None:
    client = granted(alice)
    valid = client.cookies[settings.APP_COOKIE_NAME].value
    planted = "planted" * 5
    for header in (f"aikore_app={planted}; aikore_app={valid}", f"aikore_app={valid}; aikore_app={planted}"):
        assert Client().get(AUTH, HTTP_COOKIE=header, **APPS).status_code == 200
    assert Client().get(AUTH, HTTP_COOKIE=f"aikore_app={planted}", **APPS).status_code == 401


def test_logout_password_change_deactivation_and_session_deletion_revoke(alice, bob) -> None:
    client = granted(alice)
    token = client.get("/").content.decode().split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post("/logout/", HTTP_X_CSRFTOKEN=token).status_code == 302
    assert client.get(AUTH, **APPS).status_code == 401 and not AppAccess.objects.exists()

    client = granted(alice)
    alice.set_password("another-password")
    alice.save()
    assert client.get(AUTH, **APPS).status_code == 401

    client = granted(bob)
    bob.is_active = False
    bob.save()
    assert client.get(AUTH, **APPS).status_code == 401
    bob.is_active = True
    bob.save()
    client = granted(bob)
    Session.objects.all().delete()
    assert client.get(AUTH, **APPS).status_code == 401


def test_the_control_plane_never_takes_the_app_cookie_nor_serves_app_pages(alice) -> None:
    client = granted(alice)
    value = client.cookies[settings.APP_COOKIE_NAME].value
    anonymous = Client()
    anonymous.cookies[settings.APP_COOKIE_NAME] = value
    assert anonymous.get("/api/instances").status_code == 401
    assert anonymous.get("/").status_code == 302
    for path in (AUTH, "/_aikore/app/signin", "/_aikore/app/status", "/_aikore/app/redeem"):
        assert client.get(path).status_code == 404
    # ... and app origins serve nothing of the control plane.
    for path in ("/", "/api/instances", "/admin/", "/_aikore/handoff", "/login/"):
        assert client.get(path, **APPS).status_code == 404


def test_signin_page_is_the_same_for_every_path_and_plain_for_scripts() -> None:
    # The same page but for its script nonce (one per response, the CSP's).
    pages = {re.sub(rb'nonce="[^"]+"', b'nonce=""', Client().get("/_aikore/app/signin", HTTP_X_ORIGINAL_URI=uri,
                                                                  **APPS).content)
             for uri in ("/instance/a/", "/instance/zzz/x?y=1")}
    assert len(pages) == 1
    page = pages.pop().decode()
    assert "/_aikore/handoff?to=" in page and 'import { controlOrigin } from "/_aikore/origins.js"' in page
    # The dashboard's View pane frames app origins: their AiKore pages must let it; the control
    # plane's own pages refuse any frame but their own.
    assert "X-Frame-Options" not in Client().get("/_aikore/app/signin", **APPS)
    assert Client().get("/login/")["X-Frame-Options"] == "SAMEORIGIN"
    post = Client().post("/_aikore/app/signin", **APPS)
    assert post.status_code == 401 and post["Content-Type"].startswith("text/plain")
    upgrade = Client().get("/_aikore/app/signin", HTTP_UPGRADE="websocket", **APPS)
    assert upgrade.status_code == 401 and upgrade["Content-Type"].startswith("text/plain")


def test_handoff_needs_a_logged_in_browser_session(alice) -> None:
    response = Client().get("/_aikore/handoff", {"to": "apps", "next": "/instance/a/"})
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/_aikore/handoff%3Fto%3Dapps%26next%3D")


@pytest.mark.parametrize("value, expected", [
    ("/instance/a/?b=%2F", "/instance/a/?b=%2F"), ("//evil.example/", "/"), ("http://evil.example/", "/"),
    ("/\\evil.example", "/"), ("evil", "/"), ("/a\nb", "/"), (None, "/"),
])
def test_next_is_always_a_path_on_the_same_origin(value, expected) -> None:
    assert origins.safe_next(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("https://Example.com/", "https://example.com"),
    ("http://10.0.0.5:8080 https://a.b", "http://10.0.0.5:8080 https://a.b"),
    (["http://[::1]:9000", "http://[::1]:9000"], "http://[::1]:9000"),
    ("", ""), (None, ""),
])
def test_allowed_origins_are_normalised(value, expected) -> None:
    assert validate_allowed_origins(value) == expected


@pytest.mark.parametrize("value", [
    "example.com", "ftp://example.com", "https://example.com/path", "https://user@example.com",
    'https://x.com"', "https://x.com;", "https://x.com:99999", "https://-x.com", "http://x.com?a", 5,
    " ".join(f"https://h{n}.com" for n in range(21)),
])
def test_allowed_origins_refuse_anything_but_scheme_host_port(value) -> None:
    with pytest.raises(ValidationError):
        validate_allowed_origins(value)


def test_start_page_says_503_while_supervisord_does_not_answer(alice) -> None:
    from unittest import mock

    from instances.models import Instance

    (settings.CUSTOM_BLUEPRINTS_DIR / "start-page.sh").write_text("# aikore.ready: none\nexec sleep 100\n")
    instance = Instance.objects.create_instance(name="Start Page", blueprint="start-page")
    client = logged_in(alice)
    with mock.patch("instances.supervisor.is_available", return_value=False):
        answer = client.post(f"/_aikore/start/{instance.slug}/?to=apps")
    assert answer.status_code == 503
    assert "supervisord is not reachable" in answer.content.decode()
    instance.refresh_from_db()
    assert not instance.want_running
