"""The auth_request target: what nginx asks before every proxied instance request."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import ApiToken

pytestmark = pytest.mark.django_db

AUTH = "/_aikore/auth"


def test_anonymous_browser_gets_401_with_the_way_back() -> None:
    response = Client().get(AUTH, HTTP_X_ORIGINAL_URI="/instance/demo/x?a=1&b=2", HTTP_X_ORIGINAL_METHOD="GET",
                            HTTP_X_AIKORE_LOGIN_BASE="same")
    assert response.status_code == 401
    assert response["X-AiKore-Login"] == "/login/?next=/instance/demo/x%3Fa%3D1%26b%3D2"


def test_public_port_login_goes_to_the_main_port() -> None:
    response = Client().get(AUTH, HTTP_X_ORIGINAL_URI="/instance/demo/", HTTP_X_ORIGINAL_METHOD="GET",
                            HTTP_X_AIKORE_LOGIN_BASE="http://box.lan:9000")
    assert response["X-AiKore-Login"] == "http://box.lan:9000/login/?next=/instance/demo/"


@pytest.mark.parametrize("base", ["https://evil.example", "//evil.example:1", "javascript:alert(1)//x:1", "same"])
def test_unexpected_login_base_is_ignored(base: str) -> None:
    response = Client().get(AUTH, HTTP_X_ORIGINAL_URI="/instance/demo/", HTTP_X_AIKORE_LOGIN_BASE=base)
    assert response["X-AiKore-Login"] == "/login/?next=/instance/demo/"


@pytest.mark.parametrize("uri", ["//evil.example/", "http://evil.example/", "evil"])
def test_next_is_always_a_local_path(uri: str) -> None:
    response = Client().get(AUTH, HTTP_X_ORIGINAL_URI=uri)
    assert response["X-AiKore-Login"] == "/login/?next=/"


def test_scripts_get_a_plain_401() -> None:
    assert "X-AiKore-Login" not in Client().get(AUTH, HTTP_AUTHORIZATION="Bearer nope")
    assert "X-AiKore-Login" not in Client().get(AUTH, HTTP_X_ORIGINAL_METHOD="POST")
    assert "X-AiKore-Login" not in Client().get(AUTH, HTTP_X_ORIGINAL_UPGRADE="websocket")


def test_session_and_token_pass(alice, bob, django_assert_max_num_queries) -> None:
    client = Client()
    client.force_login(bob)
    with django_assert_max_num_queries(2):  # the session row and the user: nothing else
        response = client.get(AUTH)
    assert response.status_code == 200 and response.content == b""
    _token, raw = ApiToken.issue(alice, "proxy test")
    assert Client().get(AUTH, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_inactive_user_is_refused(bob) -> None:
    client = Client()
    client.force_login(bob)
    bob.is_active = False
    bob.save()
    assert client.get(AUTH).status_code == 401
