"""The REST API through Django's test client with CSRF enforced (no live processes needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import ApiToken
from instances.models import Instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def bp() -> str:
    (Path(settings.CUSTOM_BLUEPRINTS_DIR) / "api-bp.sh").write_text(
        "# aikore.name: Api BP\n# aikore.category: Testing\n# aikore.description: for API tests\n"
        "# aikore.ready: none\nexec sleep 100\n"
    )
    return "api-bp"


@pytest.fixture
def client(alice) -> Client:
    """A browser-like client: logged in, CSRF enforced, token header added on writes."""
    c = Client(enforce_csrf_checks=True)
    c.get("/login/")  # sets the CSRF cookie, as the browser gets it
    c.force_login(alice)
    return c


def csrf(c: Client) -> dict:
    return {"HTTP_X_CSRFTOKEN": c.cookies[settings.CSRF_COOKIE_NAME].value}


def post(c: Client, url: str, data: object) -> object:
    return c.post(url, json.dumps(data), content_type="application/json", **csrf(c))


def test_create_list_get_patch_delete(client, bp):
    r = post(client, "/api/instances", {"name": "Api One", "blueprint": bp, "gpu_ids": "0,1"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["slug"] == "api-one" and body["gpu_ids"] == "0,1" and body["url"] == "/instance/api-one/"
    pk = body["id"]

    listing = client.get("/api/instances").json()
    assert [i["name"] for i in listing] == ["Api One"]
    assert client.get(f"/api/instances/{pk}").json()["status"] == "stopped"

    r = client.patch(f"/api/instances/{pk}", json.dumps({"autostart": True, "name": "Api Renamed"}),
                     content_type="application/json", **csrf(client))
    assert r.status_code == 200, r.content
    assert set(r.json()["changed"]) == {"autostart", "name"}
    assert r.json()["restarted"] is False
    instance = Instance.objects.get(pk=pk)
    assert instance.slug == "api-renamed" and instance.autostart
    assert instance.script_path.exists() and not (Path(settings.INSTANCES_DIR) / "api-one").exists()

    r = client.delete(f"/api/instances/{pk}?keep_files=true", **csrf(client))
    assert r.status_code == 204
    assert not Instance.objects.filter(pk=pk).exists()
    assert any(p.name.startswith("api-renamed-") for p in Path(settings.TRASH_DIR).iterdir())


def test_errors_are_json_with_right_codes(client, bp):
    assert client.get("/api/instances/999").status_code == 404
    assert client.get("/api/instances/999").json()["detail"] == "Instance 999 not found."
    assert client.get("/api/blueprints/nope").status_code == 404
    r = post(client, "/api/instances", {"name": "../x", "blueprint": bp})
    assert r.status_code == 422 and "name" in r.json()["errors"]
    r = post(client, "/api/instances", {"name": "ok", "blueprint": "nope"})
    assert r.status_code == 422 and "Unknown blueprint" in r.json()["errors"]["blueprint"][0]
    r = post(client, "/api/instances", {"name": "ok", "blueprint": bp, "gpu_ids": "0,abc"})
    assert r.status_code == 422 and "gpu_ids" in r.json()["errors"]
    r = post(client, "/api/instances", {"name": "ok", "blueprint": bp, "port": 80})
    assert r.status_code == 422 and "port" in r.json()["errors"]
    r = post(client, "/api/instances", {"name": 5})
    assert r.status_code == 422 and "detail" in r.json()
    r = client.post("/api/instances", "{not json", content_type="application/json", **csrf(client))
    assert r.status_code in (400, 422) and "detail" in r.json()
    assert post(client, "/api/instances", {"name": "dup", "blueprint": bp}).status_code == 201
    r = post(client, "/api/instances", {"name": "DUP", "blueprint": bp})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_port_in_use_is_a_conflict(client, bp):
    import socket

    low, _high = settings.AIKORE_INSTANCE_PORT_RANGE
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", low + 7))
        sock.listen()
        r = post(client, "/api/instances", {"name": "busy", "blueprint": bp, "port": low + 7})
    assert r.status_code == 409 and "in use" in r.json()["detail"]
    assert post(client, "/api/instances", {"name": "a", "blueprint": bp, "port": low + 8}).status_code == 201
    r = post(client, "/api/instances", {"name": "b", "blueprint": bp, "port": low + 8})
    assert r.status_code == 409 and "assigned" in r.json()["detail"]


def test_script_get_put_and_limits(client, bp):
    pk = post(client, "/api/instances", {"name": "Scripted", "blueprint": bp}).json()["id"]
    r = client.get(f"/api/instances/{pk}/script")
    assert "exec sleep 100" in r.json()["content"]
    r = client.put(f"/api/instances/{pk}/script", json.dumps({"content": "echo hi\nexec sleep 5\n"}),
                   content_type="application/json", **csrf(client))
    assert r.status_code == 200
    assert Instance.objects.get(pk=pk).read_script() == "echo hi\nexec sleep 5\n"
    r = client.put(f"/api/instances/{pk}/script", json.dumps({"content": "bin\x00ary"}),
                   content_type="application/json", **csrf(client))
    assert r.status_code == 422 and "NUL" in r.json()["detail"]
    r = client.put(f"/api/instances/{pk}/script", json.dumps({"content": "x" * 300_000}),
                   content_type="application/json", **csrf(client))
    assert r.status_code == 413
    r = client.put(f"/api/instances/{pk}/script", b"\x00\xff" * 1000, content_type="application/octet-stream",
                   **csrf(client))
    assert r.status_code in (400, 422)
    big = b'{"content": "' + b"a" * (50 * 1024 * 1024) + b'"}'
    r = client.put(f"/api/instances/{pk}/script", big, content_type="application/json", **csrf(client))
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    assert Instance.objects.get(pk=pk).read_script() == "echo hi\nexec sleep 5\n"


def test_logs_offsets_follow_without_gaps(client, bp):
    pk = post(client, "/api/instances", {"name": "Logger", "blueprint": bp}).json()["id"]
    instance = Instance.objects.get(pk=pk)
    instance.log_path.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    received = b""
    offset = 0
    while True:
        r = client.get(f"/api/instances/{pk}/logs?offset={offset}&limit=777").json()
        received += r["data"].encode()
        if r["next_offset"] == offset:
            break
        offset = r["next_offset"]
    assert received == instance.log_path.read_bytes()
    # rotation: the old file becomes output.log.1, new lines go to a fresh output.log
    instance.log_path.rename(instance.log_path.with_name("output.log.1"))
    instance.log_path.write_bytes(b"after rotation\n")
    r = client.get(f"/api/instances/{pk}/logs?offset={offset}").json()
    assert r["data"] == "after rotation\n" and r["offset"] == offset
    r = client.get(f"/api/instances/{pk}/logs?offset=-15").json()
    assert r["data"] == "after rotation\n"
    assert client.get(f"/api/instances/{pk}/logs?limit=0").status_code == 422


def test_clone_and_save_as_blueprint(client, bp):
    pk = post(client, "/api/instances", {"name": "Original", "blueprint": bp, "gpu_ids": "1",
                                          "launch_args": "--x"}).json()["id"]
    client.put(f"/api/instances/{pk}/script", json.dumps({"content": "# edited\nexec sleep 7\n"}),
               content_type="application/json", **csrf(client))
    r = post(client, f"/api/instances/{pk}/clone", {"name": "Copy"})
    assert r.status_code == 201
    copy = Instance.objects.get(pk=r.json()["id"])
    assert copy.gpu_ids == "1" and copy.launch_args == "--x" and copy.port is None
    assert copy.read_script() == "# edited\nexec sleep 7\n"
    assert post(client, f"/api/instances/{pk}/clone", {"name": "Copy"}).status_code == 409

    r = post(client, "/api/blueprints", {"instance_id": pk, "name": "my-edited"})
    assert r.status_code == 201 and r.json()["custom"] is True
    ids = [b["id"] for b in client.get("/api/blueprints").json()]
    assert "my-edited" in ids and bp in ids
    assert post(client, "/api/blueprints", {"instance_id": pk, "name": "my-edited"}).status_code == 409
    assert post(client, "/api/blueprints", {"instance_id": pk, "name": "../evil"}).status_code == 422
    detail = client.get("/api/blueprints/my-edited").json()
    assert "exec sleep 7" in detail["script"]


def test_bearer_token(bp, alice):
    token, raw = ApiToken.issue(alice, "script")
    c = Client(enforce_csrf_checks=True)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert c.get("/api/instances", **auth).status_code == 200
    r = c.post("/api/instances", json.dumps({"name": "tok", "blueprint": bp}), content_type="application/json", **auth)
    assert r.status_code == 201  # no CSRF needed for token auth
    assert ApiToken.objects.get(pk=token.pk).token_hash != raw  # stored hashed
    token.revoke()
    assert c.get("/api/instances", **auth).status_code == 401
    assert c.get("/api/instances", HTTP_AUTHORIZATION="Bearer nope").status_code == 401


def test_health_is_public_but_tells_anonymous_callers_booleans_and_codes_only(db, alice, settings):
    import time as clock

    settings.AIKORE_DISK_WARN_MB = 1 << 40  # a problem whatever else runs: no disk has that much free
    r = Client().get("/api/health")
    assert r.status_code == 200
    anonymous = r.json()
    assert {"status", "codes", "db", "supervisord", "worker", "nginx", "disk"} <= anonymous.keys()
    assert not {"reasons", "version", "nginx_generation"} & anonymous.keys()
    assert anonymous["disk"] == {"low": anonymous["disk"]["low"]}  # no free bytes
    # Degraded, said by codes (no paths, no free bytes, no error texts) ...
    assert anonymous["status"] == "degraded" and "disk_low" in anonymous["codes"]
    assert all(isinstance(v, bool) for k, v in anonymous.items() if k not in ("status", "codes", "disk"))
    # ... and at once: no waiting for a reload to land, whoever asks.
    signed_in = Client()
    signed_in.force_login(alice)
    started = clock.monotonic()
    detailed = signed_in.get("/api/health").json()
    assert clock.monotonic() - started < 0.9
    assert {"reasons", "version", "nginx_generation"} <= detailed.keys() and "free_bytes" in detailed["disk"]
    assert len(detailed["reasons"]) == len(detailed["codes"])
    assert any(reason.startswith("low disk space") for reason in detailed["reasons"])


def test_system_ports(client, bp):
    from instances.ports import port_is_bindable

    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    port = next(p for p in range(low, high + 1) if port_is_bindable(p))  # another stack may hold the first
    r = post(client, "/api/instances", {"name": "porty", "blueprint": bp, "port": port})
    assert r.status_code == 201, r.content
    r = client.get("/api/system/ports").json()
    assert r["range"] == [low, high]
    assert r["used"] == [{"port": port, "instance_id": r["used"][0]["instance_id"], "name": "porty"}]
    assert port not in r["free"] and len(r["free"]) == 20
