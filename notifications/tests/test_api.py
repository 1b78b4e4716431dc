"""/api/notifications/...: targets (staff only, secrets masked, 422 on a URL Apprise can't use),
the test button against a local webhook, the history and per-instance kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.db import IntegrityError, transaction
from django.test import Client

from instances.models import Instance
from instances.signals import instance_event
from notifications.models import Delivery, Target
from notifications.tests.helpers import closed_port_url

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.get("/login/")
    c.force_login(user)
    return c


@pytest.fixture
def client(alice) -> Client:
    return logged_in(alice)


def call(c: Client, method: str, url: str, data: object = None):
    token = c.cookies[settings.CSRF_COOKIE_NAME].value
    body = json.dumps(data) if data is not None else ""
    return getattr(c, method)(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)


SECRET_URL = "json://hook-user:hunter2-password@127.0.0.1:9/secret-path?token=abc"


def test_target_crud_masks_the_secret(client):
    r = call(client, "post", "/api/notifications/targets", {"name": "Phone", "url": SECRET_URL})
    assert r.status_code == 201, r.content
    target = r.json()
    assert target["url"] == "json://127.0.0.1:9/…"
    assert target["kinds"] == ["crashed", "failed", "finished", "install_finished", "install_failed",
                               "stuck_starting", "disk_low", "gpu_hot"]
    assert target["source"] == "db" and target["enabled"] is True and target["last_status"] == ""
    assert Target.objects.get(pk=target["id"]).url == SECRET_URL

    listing = client.get("/api/notifications/targets")
    assert listing.status_code == 200
    one = client.get(f"/api/notifications/targets/{target['id']}")
    for response in (r, listing, one):
        text = response.content.decode()
        assert "hunter2" not in text and "secret-path" not in text and "token=abc" not in text

    r = call(client, "patch", f"/api/notifications/targets/{target['id']}",
             {"kinds": ["failed", "finished"], "enabled": False, "name": "Phone 2"})
    assert r.status_code == 200, r.content
    assert (r.json()["kinds"], r.json()["enabled"], r.json()["name"]) == (["failed", "finished"], False, "Phone 2")
    r = call(client, "patch", f"/api/notifications/targets/{target['id']}", {"url": "ntfy://new-topic"})
    assert r.status_code == 200 and r.json()["url"] == "ntfy://…"

    r = call(client, "delete", f"/api/notifications/targets/{target['id']}")
    assert r.status_code == 204
    assert client.get(f"/api/notifications/targets/{target['id']}").status_code == 404


@pytest.mark.parametrize("payload,field,fragment", [
    ({"name": "x", "url": "http://example.org/"}, "url", "Apprise cannot use"),
    ({"name": "x", "url": "nothing"}, "url", "scheme://"),
    ({"name": "x", "url": ""}, "url", "required"),
    ({"name": "", "url": "ntfy://t"}, "name", "required"),
    ({"name": "x", "url": "ntfy://t", "kinds": ["failed", "bogus"]}, "kinds", "bogus"),
    ({"name": "x", "url": 12}, "url", ""),
    ({"name": "x" * 101, "url": "ntfy://t"}, "name", ""),
])
def test_bad_target_input_is_422_with_a_message(client, payload, field, fragment):
    r = call(client, "post", "/api/notifications/targets", payload)
    assert r.status_code == 422, r.content
    body = r.json()
    assert field in body.get("errors", {}), body
    assert fragment in body["detail"]
    assert Target.objects.count() == 0


def test_malformed_json_and_unknown_ids(client):
    r = client.post("/api/notifications/targets", "{not json", content_type="application/json",
                    HTTP_X_CSRFTOKEN=client.cookies[settings.CSRF_COOKIE_NAME].value)
    assert 400 <= r.status_code < 500 and "detail" in r.json()
    assert client.get("/api/notifications/targets/999").status_code == 404
    assert call(client, "post", "/api/notifications/targets/999/test").status_code == 404
    assert call(client, "put", "/api/notifications/instances/999", {"kinds": []}).status_code == 404
    assert client.get("/api/notifications/events?limit=0").status_code == 422
    assert client.get("/api/notifications/events?limit=201").status_code == 422
    r = client.get("/api/notifications/events?kind=nope")
    assert r.status_code == 422 and "Unknown event kind" in r.json()["detail"]


def test_only_admins_manage_targets(bob):
    c = logged_in(bob)
    Target.objects.create(name="secret", url="ntfy://topic")
    for method, url, data in [("get", "/api/notifications/targets", None),
                              ("post", "/api/notifications/targets", {"name": "x", "url": "ntfy://t"}),
                              ("post", "/api/notifications/targets/1/test", None),
                              ("post", "/api/notifications/test", {"url": "ntfy://t"}),
                              ("get", "/api/notifications/deliveries", None)]:
        r = call(c, method, url, data) if method != "get" else c.get(url)
        assert r.status_code == 403, (url, r.content)
        assert "admin role" in r.json()["detail"]
    # Everyone signed in sees the history and the kinds.
    assert c.get("/api/notifications/events").status_code == 200
    assert c.get("/api/notifications/kinds").status_code == 200


def test_writes_need_authentication_and_csrf(alice):
    anonymous = Client()
    assert anonymous.get("/api/notifications/events").status_code == 401
    assert anonymous.post("/api/notifications/targets", "{}", content_type="application/json").status_code == 401
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    r = c.post("/api/notifications/targets", json.dumps({"name": "x", "url": "ntfy://t"}),
               content_type="application/json")
    assert r.status_code in (401, 403)
    assert Target.objects.count() == 0


def test_the_test_button_reaches_the_webhook(client, webhook):
    target = Target.objects.create(name="Local hook", url=webhook.url)
    r = call(client, "post", f"/api/notifications/targets/{target.pk}/test")
    assert r.status_code == 200, r.content
    assert r.json()["ok"] is True and r.json()["target"]["last_status"] == "sent"
    assert webhook.titles() == ["AiKore: test notification"]
    message = webhook.messages[0]
    assert message["type"] == "info" and "Local hook" in message["message"]
    assert message["_user_agent"] == "AiKore"

    # An unsaved URL can be tried before it is added.
    r = call(client, "post", "/api/notifications/test", {"url": webhook.url})
    assert r.json() == {"ok": True, "error": "", "target": None}
    assert len(webhook.messages) == 2
    r = call(client, "post", "/api/notifications/test", {"url": "bogus"})
    assert r.status_code == 422


def test_a_failing_test_is_reported_not_raised(client):
    target = Target.objects.create(name="Nobody home", url=closed_port_url())
    r = call(client, "post", f"/api/notifications/targets/{target.pk}/test")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False and "Connection error" in body["error"]
    assert body["target"]["last_status"] == "failed" and body["target"]["last_error"] == body["error"]


def test_env_targets_are_listed_masked_and_not_deletable(client, settings):
    settings.AIKORE_NOTIFY_URLS = ["json://127.0.0.1:9/env-secret", "ntfy://env-topic"]
    listing = client.get("/api/notifications/targets").json()
    assert [(t["source"], t["url"]) for t in listing] == [("env", "json://127.0.0.1:9/…"), ("env", "ntfy://…")]
    assert "env-secret" not in json.dumps(listing) and "env-topic" not in json.dumps(listing)
    env_id = listing[0]["id"]
    assert call(client, "delete", f"/api/notifications/targets/{env_id}").status_code == 409
    r = call(client, "patch", f"/api/notifications/targets/{env_id}", {"url": "ntfy://other"})
    assert r.status_code == 422 and "AIKORE_NOTIFY_URLS" in r.json()["detail"]
    r = call(client, "patch", f"/api/notifications/targets/{env_id}", {"kinds": ["failed"], "enabled": False})
    assert r.status_code == 200 and r.json()["kinds"] == ["failed"]
    # Jobs mirror the variable concurrently: the database keeps one row per environment URL.
    with pytest.raises(IntegrityError), transaction.atomic():
        Target.objects.create(source="env", url="ntfy://env-topic", name="twin")
    # Removed from the environment: gone here too; kept ones keep the user's choices.
    settings.AIKORE_NOTIFY_URLS = ["json://127.0.0.1:9/env-secret"]
    listing = client.get("/api/notifications/targets").json()
    assert [(t["id"], t["kinds"], t["enabled"]) for t in listing] == [(env_id, ["failed"], False)]


def test_history_and_per_instance_kinds(client, bob):
    (Path(settings.CUSTOM_BLUEPRINTS_DIR) / "notify-api.sh").write_text("# aikore.ready: none\nexec sleep 100\n")
    inst = Instance.objects.create_instance(name="Api Notify", blueprint="notify-api")
    for attempt in (1, 2):
        instance_event.send(sender=Instance, instance=inst, kind="crashed", exit_code=3, attempt=attempt, limit=3, delay=1)
    instance_event.send(sender=Instance, instance=inst, kind="install_failed", step="venv", reason="disk full",
                        log_tail="No space left on device\n")
    target = Target.objects.create(name="t", url="ntfy://t")
    from notifications.models import Event

    Delivery.objects.create(event=Event.objects.order_by("-pk").first(), target=target, status="failed",
                            attempts=3, error="Connection error")

    events = client.get("/api/notifications/events").json()
    assert [e["kind"] for e in events] == ["install_failed", "crashed", "crashed"]
    assert events[0]["title"] == "AiKore: Api Notify: install failed at step venv"
    assert events[0]["deliveries"] == [{"id": events[0]["deliveries"][0]["id"], "target_id": target.pk,
                                        "target_name": "t", "status": "failed", "attempts": 3,
                                        "error": "Connection error",
                                        "updated_at": events[0]["deliveries"][0]["updated_at"]}]
    assert events[1]["suppressed_by"] == events[2]["id"] and events[2]["suppressed_by"] is None
    assert [e["kind"] for e in client.get("/api/notifications/events?kind=crashed&limit=1").json()] == ["crashed"]
    assert client.get(f"/api/notifications/events?instance_id={inst.pk + 1}").json() == []

    failures = client.get("/api/notifications/deliveries").json()
    assert [(f["target_name"], f["status"], f["target_url"]) for f in failures] == [("t", "failed", "ntfy://…")]

    assert client.get(f"/api/notifications/instances/{inst.pk}").json() == {
        "instance_id": inst.pk,
        "kinds": ["crashed", "failed", "finished", "install_finished", "install_failed", "stuck_starting"]}
    c = logged_in(bob)  # any signed-in user may tune an instance's notifications
    r = call(c, "put", f"/api/notifications/instances/{inst.pk}", {"kinds": ["failed"]})
    assert r.status_code == 200 and r.json()["kinds"] == ["failed"]
    r = call(c, "put", f"/api/notifications/instances/{inst.pk}", {"kinds": ["disk_low"]})
    assert r.status_code == 422 and "system events" in r.json()["detail"]
    r = call(c, "put", f"/api/notifications/instances/{inst.pk}", {"kinds": "failed"})
    assert r.status_code == 422


def test_kinds_and_config(client):
    kinds = client.get("/api/notifications/kinds").json()
    assert {k["kind"]: k["scope"] for k in kinds}["disk_low"] == "system"
    assert all(k["label"] and k["description"] for k in kinds)
    config = client.get("/api/notifications/config").json()
    assert config["retries"] == settings.AIKORE_NOTIFY_RETRIES and config["gpu_temp"] == settings.AIKORE_NOTIFY_GPU_TEMP
