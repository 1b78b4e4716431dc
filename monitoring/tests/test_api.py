"""/api/system/stats and /api/system/gpus."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(alice) -> Client:
    c = Client()
    c.force_login(alice)
    return c


def test_stats_latest_sample_and_history_on_request(client):
    from monitoring.sampler import get_sampler

    sampler = get_sampler()
    for _ in range(3):
        sampler.sample()
    body = client.get("/api/system/stats").json()
    assert body["interval"] == sampler.interval
    assert body["latest"]["seq"] == sampler.latest()["seq"]
    assert {"host", "gpu", "instances", "ts"} <= set(body["latest"])
    assert "history" not in body

    body = client.get("/api/system/stats?history=3600").json()
    assert [s["seq"] for s in body["history"]] == [s["seq"] for s in sampler.history(None)]
    assert len(body["history"]) >= 3


def test_gpus_say_why_there_is_none(client):
    body = client.get("/api/system/gpus").json()
    assert set(body) == {"available", "reason", "gpus"}
    if not body["available"]:
        assert body["reason"] and body["gpus"] == []


def test_system_endpoints_need_auth():
    assert Client().get("/api/system/stats").status_code == 401
    assert Client().get("/api/system/gpus").status_code == 401
