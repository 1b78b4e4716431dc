"""Every route but /api/health, the login page and static files refuses anonymous callers, and
every unsafe API method refuses a session without a CSRF token."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from aikore_site.api import api

pytestmark = pytest.mark.django_db

PUBLIC_API = {("/api/health", "get")}


def call(client: Client, method: str, path: str):
    if method == "get":
        return client.get(path)
    return getattr(client, method)(path, data=json.dumps({}), content_type="application/json")


def api_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    ops = []
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            ops.append((concrete, method))
    return ops


OPERATIONS = api_operations()


def test_sweep_covers_the_api():
    paths = {p for p, _ in OPERATIONS}
    for expected in ("/api/instances", "/api/instances/1", "/api/instances/1/start", "/api/instances/1/logs",
                     "/api/instances/1/script", "/api/blueprints", "/api/system/stats", "/api/system/ports"):
        assert expected in paths
    assert len(OPERATIONS) >= 18


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_anonymous_refused(path, method):
    response = call(Client(), method, path)
    if (path, method) in PUBLIC_API:
        assert response.status_code == 200
        return
    assert response.status_code == 401, (path, method, response.content)
    assert "detail" in response.json()


@pytest.mark.parametrize(("path", "method"), [op for op in OPERATIONS if op[1] in ("post", "put", "patch", "delete")])
def test_session_write_without_csrf_refused(path, method, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = call(client, method, path)
    assert response.status_code == 403, (path, method, response.content)


@pytest.mark.parametrize("path", ["/", "/admin/", "/admin/instances/instance/"])
def test_pages_redirect_to_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(("/login/", "/admin/login/"))
    assert "next=" in response["Location"]


def test_metrics_requires_auth():
    response = Client().get("/metrics")
    assert response.status_code == 401


def test_public_pages():
    assert Client().get("/login/").status_code == 200
    assert Client().get("/api/health").status_code == 200


def test_login_then_next(alice):
    client = Client()
    r = client.post("/login/?next=/admin/", {"username": "alice", "password": "alice-password", "next": "/admin/"})
    assert r.status_code == 302 and r["Location"] == "/admin/"
