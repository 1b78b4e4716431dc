"""Apps in origins of their own, through the real nginx of the live stack: what reaches an app
(never AiKore's cookies or tokens; the URI as sent; bodies of any size), who may reach it (the
app credential only, bound to its origin and to the control-plane session; the same answer for
every anonymous request), Origin checks, the status page of a stopped instance and its released
public port. The isolation probe (instances/tests/isolation_app.py) reports what it received."""

from __future__ import annotations

import hashlib
import re
import time

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from accounts.models import ApiToken, AppAccess
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import wait_for, wait_status
from proxy.tests.helpers import (
    app_client,
    apps_url,
    grant_app_access,
    handoff_code,
    main_url,
    public_url,
    routed,
    session_client,
)

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

UPLOAD_BYTES = 200 * 1024 * 1024


def start_probe(client: httpx.Client, name: str = "Probe", blueprint: str = "isolation") -> Instance:
    instance = Instance.objects.create_instance(name=name, blueprint=blueprint)
    instance.start()
    instance = wait_status(instance, InstanceStatus.RUNNING)
    instance.refresh_from_db()
    wait_for(lambda: routed(client, apps_url(f"{instance.url_path}health")), 15, f"{instance.slug} through nginx")
    grant_app_access(client, f"port:{instance.public_port}")
    return instance


def probe_urls(instance: Instance, path: str) -> dict[str, str]:
    """Every place the probe is served, for an app-relative `path` (no leading slash)."""
    return {
        "apps port": apps_url(f"{instance.url_path}{path}"),
        "public port": public_url(instance.public_port, f"/{path}"),
        "public port, prefixed": public_url(instance.public_port, f"{instance.url_path}{path}"),
    }


def cookie_jar_header(client: httpx.Client, extra: str = "") -> str:
    return "; ".join([*(f"{k}={v}" for k, v in client.cookies.items()), *([extra] if extra else [])])


def test_an_app_never_sees_aikore_credentials(live, alice) -> None:
    _token, raw = ApiToken.issue(alice, "script")
    with app_client(alice) as client:
        probe = start_probe(client)
        # The browser's own cookies, planted duplicates and the app's own cookies, all at once.
        cookies = cookie_jar_header(client, "theme=dark; aikore_session=planted; AIKORE_CSRFTOKEN=x; lang=en")
        for where, url in probe_urls(probe, "headers").items():
            for auth in (f"Bearer {raw}", "bearer   aik_whatever"):
                seen = httpx.get(url, headers={"Cookie": cookies, "Authorization": auth}).json()
                headers = {k.lower(): v for k, v in seen["headers"]}
                assert headers.get("cookie") == "theme=dark; lang=en", (where, headers)
                assert "authorization" not in headers, (where, headers)
                assert not any("aikore" in v.lower() or "aik_" in v for v in headers.values()), (where, headers)
            # An app's own Authorization header is its business.
            seen = httpx.get(url, headers={"Cookie": cookies, "Authorization": "Basic dTpw"}).json()
            assert ["Authorization", "Basic dTpw"] in seen["headers"], where
            # The browser's Host (port included) reaches the app, as ComfyUI's origin check needs.
            assert dict(seen["headers"])["Host"] == url.split("/")[2], where


def test_uri_as_sent_and_200_mb_upload_reach_the_app_on_every_path(live, alice) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        keep = start_probe(client, "Probe kept", "isolation-keep")
        raw_path = "api/userdata/workflows%2Fmy%20flow.json?x=%2F&y=a%3Fb"
        for where, url in probe_urls(probe, raw_path).items():
            seen = client.get(httpx.URL(url)).json()
            assert seen["target"] == "/" + raw_path, where
        # Prefix kept: the app gets the whole URI, as sent.
        seen = client.get(httpx.URL(apps_url(f"{keep.url_path}{raw_path}"))).json()
        assert seen["target"] == f"{keep.url_path}{raw_path}"

        block = hashlib.sha256(b"aikore").digest() * (1 << 15)  # 1 MiB, not all zeros

        def body():
            for _ in range(UPLOAD_BYTES // len(block)):
                yield block

        expected = hashlib.sha256()
        for _ in range(UPLOAD_BYTES // len(block)):
            expected.update(block)
        for where, url in probe_urls(probe, "upload").items():
            response = client.post(url, content=body(), headers={"Content-Length": str(UPLOAD_BYTES)},
                                   timeout=120)
            assert response.status_code == 200, (where, response.status_code, response.text[:300])
            assert response.json()["body_size"] == UPLOAD_BYTES, where
            assert response.json()["body_sha256"] == expected.hexdigest(), where


def test_websockets_and_writes_from_a_foreign_origin_are_refused(live, alice) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        jar = {"Cookie": cookie_jar_header(client)}
        places = {
            apps_url(): f"ws://127.0.0.1:{settings.AIKORE_APPS_PORT}{probe.url_path}ws",
            public_url(probe.public_port): f"ws://127.0.0.1:{probe.public_port}/ws",
        }
        for own, ws_url in places.items():
            for foreign in ("http://evil.example", main_url(), "null", own.replace("127.0.0.1", "localhost")):
                with pytest.raises(InvalidStatus) as refused:
                    connect(ws_url, additional_headers=jar, origin=foreign, open_timeout=10).close()
                assert refused.value.response.status_code == 403, (ws_url, foreign)
            with connect(ws_url, additional_headers=jar, origin=own, open_timeout=10) as ws:
                ws.send("hello")
                assert ws.recv(timeout=10) == "hello"
            http_url = ws_url.replace("ws://", "http://").removesuffix("ws") + "write"
            assert client.post(http_url, headers={"Origin": "http://evil.example"}).status_code == 403
            assert client.put(http_url, headers={"Origin": main_url()}).status_code == 403
            assert client.post(http_url, headers={"Origin": own}).status_code == 200
            assert client.post(http_url).status_code == 200  # no Origin: a script, not a page
            assert client.get(http_url, headers={"Origin": "http://evil.example"}).status_code == 200

        # An instance may list origins that need cross-origin access: applied live, no restart.
        pid = probe.pid
        response = client.patch(main_url(f"/api/instances/{probe.pk}"), json={"allowed_origins": "https://tools.example.com"},
                                headers={"X-CSRFToken": "unused"})
        assert response.status_code == 403  # a session without the CSRF token writes nothing
        probe.update_settings({"allowed_origins": "https://Tools.example.com/"})
        probe.refresh_from_db()
        assert probe.allowed_origins == "https://tools.example.com" and probe.pid == pid
        url = apps_url(f"{probe.url_path}write")
        wait_for(lambda: client.post(url, headers={"Origin": "https://tools.example.com"}).status_code == 200, 10,
                 "the listed origin accepted")
        assert client.post(url, headers={"Origin": "https://tools.example.com:8443"}).status_code == 403


def test_anonymous_visitors_get_the_same_answer_for_every_instance_path(live, alice) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        stopped = Instance.objects.create_instance(name="Never started", blueprint="isolation")
    answers = set()
    for path in (probe.url_path, f"{probe.url_path}x?y=1", stopped.url_path, "/instance/no-such-thing/",
                 "/instance/no-such-thing/deep/path"):
        response = httpx.get(apps_url(path))
        assert response.status_code == 401, path
        assert "/_aikore/handoff?to=" in response.text
        answers.add(re.sub(r'nonce="[^"]+"', "", response.text))  # a fresh CSP nonce per response
    assert len(answers) == 1
    slashless = {httpx.get(apps_url(path)).status_code for path in (probe.url_path.rstrip("/"), "/instance/nope")}
    assert slashless == {301}
    # Scripts and websockets get the plain 401; nothing reaches the app.
    assert httpx.post(apps_url(f"{probe.url_path}x"), content=b"data").status_code == 401
    assert httpx.get(public_url(probe.public_port, "/x")).status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{settings.AIKORE_APPS_PORT}{probe.url_path}ws", open_timeout=10).close()
    assert refused.value.response.status_code == 401
    # A control-plane session or API token is not an app credential.
    _token, raw = ApiToken.issue(alice, "script")
    with session_client(alice) as only_session:
        assert only_session.get(apps_url(f"{probe.url_path}x")).status_code == 401
    assert httpx.get(apps_url(f"{probe.url_path}x"), headers={"Authorization": f"Bearer {raw}"}).status_code == 401


def test_the_credential_is_one_time_bound_to_origin_and_session_and_never_a_control_plane_key(live, alice, bob) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        app_cookie = client.cookies[settings.APP_COOKIE_NAME]
        # Used once only.
        code = handoff_code(client, "apps")
        assert client.get(apps_url("/_aikore/redeem"), params={"code": code}).status_code == 302
        assert client.get(apps_url("/_aikore/redeem"), params={"code": code}).status_code == 403
        # Only on the origin it was issued for.
        code = handoff_code(client, "apps")
        assert client.get(public_url(probe.public_port, "/_aikore/redeem"), params={"code": code}).status_code == 403
        # Only in the browser that holds the issuing session (a leaked code is useless elsewhere).
        code = handoff_code(client, "apps")
        with session_client(bob) as other:
            assert other.get(apps_url("/_aikore/redeem"), params={"code": code}).status_code == 403
        assert httpx.get(apps_url("/_aikore/redeem"), params={"code": handoff_code(client, "apps")}).status_code == 403

        # The control plane never takes it.
        only_app = {"Cookie": f"{settings.APP_COOKIE_NAME}={app_cookie}"}
        assert httpx.get(main_url("/api/instances"), headers=only_app).status_code == 401
        assert httpx.get(main_url("/"), headers=only_app).status_code == 302
        assert httpx.get(apps_url(f"{probe.url_path}x"), headers=only_app).status_code == 200
        # Nor are app-origin pages served on the control plane, whatever a client claims.
        assert client.get(main_url("/_aikore/app/status")).status_code == 404
        assert client.get(main_url("/api/instances"), headers={"X-AiKore-Origin": "apps"}).status_code == 200
        assert client.get(apps_url("/api/instances")).status_code == 404
        assert client.get(apps_url("/admin/")).status_code == 404
        assert client.get(apps_url("/_aikore/app/auth")).status_code == 404


def test_the_login_cache_is_keyed_on_exactly_what_django_checks(live, alice) -> None:
    """A planted duplicate beside a valid credential must not open a window for the planted value
    alone (issue 10, item 4)."""
    with app_client(alice) as client:
        probe = start_probe(client)
        valid = client.cookies[settings.APP_COOKIE_NAME]
        url = apps_url(f"{probe.url_path}x")
        planted = "planted" * 5
        for header in (f"aikore_app={planted}; aikore_app={valid}", f"aikore_app={valid}; aikore_app={planted}"):
            assert httpx.get(url, headers={"Cookie": header}).status_code == 200, header
            assert httpx.get(url, headers={"Cookie": f"aikore_app={planted}"}).status_code == 401


def test_logout_ends_app_access_within_the_cache_time(live, alice) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        url = apps_url(f"{probe.url_path}x")
        assert client.get(url).status_code == 200
        page = client.get(main_url("/"))
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        logout = client.post(main_url("/logout/"), headers={"X-CSRFToken": token, "Referer": main_url("/")})
        assert logout.status_code == 302
        logged_out = time.monotonic()
        assert not AppAccess.objects.exists()
        wait_for(lambda: client.get(url).status_code == 401, settings.AIKORE_AUTH_CACHE_SECONDS + 1.5,
                 "the app origin refusing the logged-out browser")
        assert time.monotonic() - logged_out <= settings.AIKORE_AUTH_CACHE_SECONDS + 1.5


def test_deactivating_the_user_ends_app_access(live, bob) -> None:
    with app_client(bob) as client:
        probe = start_probe(client)
        url = apps_url(f"{probe.url_path}x")
        assert client.get(url).status_code == 200
        bob.is_active = False
        bob.save()
        wait_for(lambda: client.get(url).status_code == 401, settings.AIKORE_AUTH_CACHE_SECONDS + 1.5, "refused")


def test_a_stopped_instance_shows_its_status_and_gives_its_public_port_back(live, alice) -> None:
    with app_client(alice) as client:
        probe = start_probe(client)
        public_port = probe.public_port
        probe.stop()
        probe = wait_status(probe, InstanceStatus.STOPPED)
        assert probe.public_port is None
        page = client.get(apps_url(f"{probe.url_path}some/page"))
        assert page.status_code == 503 and "Probe is stopped" in page.text and 'id="start-link"' in page.text
        unknown = client.get(apps_url("/instance/no-such-thing/"))
        assert unknown.status_code == 404 and "No instance" in unknown.text
        wait_for(lambda: not routed(client, public_url(public_port, "/x"), ok=lambda r: True), 10, "port closed")

        # Start, through the control plane (the app origin accepts no control-plane writes).
        start = client.get(main_url(f"/_aikore/start/{probe.slug}/"), params={"to": "apps", "next": "/instance/probe/"})
        assert start.status_code == 200 and "Start Probe" in start.text
        token = start.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        started = client.post(main_url(f"/_aikore/start/{probe.slug}/?to=apps&next=/instance/probe/"),
                              data={"csrfmiddlewaretoken": token}, headers={"Referer": main_url("/")})
        assert started.status_code == 302 and started.headers["location"].startswith("/_aikore/handoff?to=apps")
        probe = wait_status(probe, InstanceStatus.RUNNING)
        assert probe.public_port
        wait_for(lambda: routed(client, apps_url(f"{probe.url_path}health")), 15, "running again")
