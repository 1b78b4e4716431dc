"""Through the live stack: password guesses with spoofed client addresses (through nginx, and
straight to daphne's socket) are throttled; logging out, deactivating the user and revoking a token
close the streams they opened at once; AiKore's files and sockets are private while an instance
keeps the user's umask; the API answers unknown ids and routes in JSON."""

from __future__ import annotations

import json
import os
import stat
import time
from contextlib import ExitStack

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from accounts import roles
from accounts.models import ApiToken, LoginAttempt
from aikore_site.files import make_private
from instances.models import Instance
from instances.tests.helpers import custom_blueprint, wait_for, wait_status
from proxy.tests.helpers import main_url, session_value

pytestmark = pytest.mark.stack
CSRF = "b" * 32


def login_form(client: httpx.Client, username: str, password: str, **headers: str) -> httpx.Response:
    client.cookies.set(settings.CSRF_COOKIE_NAME, CSRF)
    return client.post(main_url("/login/"), data={"username": username, "password": password},
                       headers={"X-CSRFToken": CSRF, **headers})


def test_spoofed_addresses_through_nginx_are_ignored_and_guessing_is_throttled(live, alice) -> None:
    with httpx.Client(timeout=30) as client:
        statuses = []
        for n in range(settings.AIKORE_LOGIN_FREE_FAILURES + 3):
            spoof = f"203.0.113.{n}"
            statuses.append(login_form(client, "alice", "wrong", **{"X-Forwarded-For": spoof, "X-Real-IP": spoof})
                            .status_code)
        assert 429 in statuses, statuses
        LoginAttempt.objects.update(at=LoginAttempt.objects.order_by("-at").first().at)
        assert login_form(client, "alice", "alice-password", **{"X-Real-IP": "198.51.100.1"}).status_code == 429
    # nginx recorded the connection's own address, never the client's claims.
    assert set(LoginAttempt.objects.values_list("address", flat=True)) == {"127.0.0.1"}


def test_guesses_straight_to_daphnes_socket_are_throttled_too(live, alice) -> None:
    mode = stat.S_IMODE(os.stat(settings.DAPHNE_SOCKET).st_mode)
    assert mode == 0o600, oct(mode)  # only AiKore's own user (and so nginx) can reach it
    with live.daphne_client(cookies={settings.CSRF_COOKIE_NAME: CSRF}) as client:
        statuses = []
        for n in range(settings.AIKORE_LOGIN_FREE_FAILURES + 3):
            spoof = f"203.0.113.{n}"
            statuses.append(client.post("/login/", data={"username": "alice", "password": "wrong"},
                                        headers={"X-Forwarded-For": spoof, "X-CSRFToken": CSRF}).status_code)
        assert 429 in statuses, statuses
    # Every address differed, the account's delay held all the same.
    assert LoginAttempt.objects.filter(result="delayed", username="alice").exists()


def open_streams(stack: ExitStack, instance_id: int, cookie: str | None = None, token: str | None = None) -> list:
    headers = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"} if cookie else {"Authorization": f"Bearer {token}"}
    origin = f"http://127.0.0.1:{settings.AIKORE_PORT}" if cookie else None
    streams = []
    for path in ("/ws/instances/", "/ws/system/", f"/ws/instances/{instance_id}/logs/"):
        conn = stack.enter_context(connect(f"ws://127.0.0.1:{settings.AIKORE_PORT}{path}", additional_headers=headers,
                                           origin=origin, open_timeout=10))
        conn.recv(timeout=10)  # the snapshot, history or backfill: the stream is up
        streams.append(conn)
    return streams


def closed_with(conn, timeout: float = 5.0) -> int | None:
    """Read until the server closes; its close code (None if it kept streaming past `timeout`)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            conn.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else -1
    except TimeoutError:
        return None
    return None


@pytest.fixture
def idle_instance(live) -> Instance:
    return Instance.objects.create_instance(name="Streamed", blueprint=custom_blueprint(
        "streamed", "# aikore.ready: none\necho hello\nexec sleep 600\n"))


def test_logout_closes_the_sessions_streams_at_once(live, alice, idle_instance) -> None:
    cookie = session_value(alice)
    stack = ExitStack()
    other_session = open_streams(stack, idle_instance.pk, session_value(alice))
    streams = open_streams(stack, idle_instance.pk, cookie)
    with httpx.Client(cookies={settings.SESSION_COOKIE_NAME: cookie, settings.CSRF_COOKIE_NAME: CSRF}) as client:
        started = time.monotonic()
        assert client.post(main_url("/logout/"), headers={"X-CSRFToken": CSRF}).status_code == 302
    assert [closed_with(s) for s in streams] == [4401, 4401, 4401]
    assert time.monotonic() - started < 3
    # Another session of the same user streams on.
    assert [closed_with(s, 0.5) for s in other_session] == [None, None, None]
    stack.close()


def test_deactivating_the_user_or_taking_the_role_closes_every_stream(live, bob, viewer, idle_instance) -> None:
    with ExitStack() as stack:
        streams = (open_streams(stack, idle_instance.pk, session_value(bob))
                   + open_streams(stack, idle_instance.pk, session_value(bob)))
        bob.is_active = False
        bob.save()
        assert [closed_with(s) for s in streams] == [4401] * 6
        streams = open_streams(stack, idle_instance.pk, session_value(viewer))
        roles.assign(viewer, None)
        assert [closed_with(s) for s in streams] == [4401] * 3


def test_taking_the_role_inside_a_transaction_closes_the_streams_once_it_commits(live, alice, viewer, operator,
                                                                                   idle_instance) -> None:
    """The admin's user form saves inside a transaction: the streams are told after the commit,
    so they check the new state (told before, they saw the old role and stayed open for good)."""
    from django.db import transaction
    from django.test import Client

    with ExitStack() as stack:
        streams = open_streams(stack, idle_instance.pk, session_value(viewer))
        with transaction.atomic():
            roles.assign(viewer, None)
            time.sleep(1.0)  # the streams would have checked by now, and found the old role
            assert [closed_with(s, 0.1) for s in streams] == [None] * 3  # not yet: nothing committed
        assert [closed_with(s) for s in streams] == [4401] * 3

        # The same through the admin's own user form (its save runs in a transaction).
        streams = open_streams(stack, idle_instance.pk, session_value(operator))
        admin = Client()
        admin.force_login(alice)
        form = {"username": operator.username, "first_name": "", "last_name": "", "email": operator.email,
                "is_active": "on", "groups": [], "user_permissions": [], "last_login_0": "", "last_login_1": "",
                "date_joined_0": operator.date_joined.strftime("%Y-%m-%d"),
                "date_joined_1": operator.date_joined.strftime("%H:%M:%S")}
        answer = admin.post(f"/admin/auth/user/{operator.pk}/change/", form)
        assert answer.status_code == 302, answer.content.decode()[:2000]
        assert roles.own_role(operator) is None
        assert [closed_with(s) for s in streams] == [4401] * 3


def test_revoking_a_token_closes_its_streams(live, alice, idle_instance) -> None:
    token, raw = ApiToken.issue(alice, "monitor", roles.VIEWER)
    _, other = ApiToken.issue(alice, "other", roles.VIEWER)
    with ExitStack() as stack:
        streams, others = open_streams(stack, idle_instance.pk, token=raw), open_streams(stack, idle_instance.pk, token=other)
        token.revoke()
        assert [closed_with(s) for s in streams] == [4401] * 3
        assert [closed_with(s, 0.5) for s in others] == [None] * 3


def test_aikore_files_and_sockets_are_private_and_instances_keep_the_users_umask(live, alice) -> None:
    data = settings.AIKORE_DATA_DIR

    def mode(path) -> int:
        return stat.S_IMODE(os.stat(path).st_mode)

    # With an apps' user of their own (the suite run as root), it may enter the data dir, not list it.
    assert mode(data) == (0o750 if settings.AIKORE_APP_USER else 0o700)
    for name in ("run", "logs", "supervisor", "nginx"):
        assert mode(data / name) == 0o700, name
    secrets_and_dbs = [p for p in data.iterdir() if p.name.startswith(("aikore.db", "huey.db")) or p.name == "secret_key"]
    assert {p.name for p in secrets_and_dbs} >= {"aikore.db", "huey.db", "secret_key"}
    for path in [*secrets_and_dbs, *(data / "run").glob("*.sock")]:
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert {p.name for p in (data / "run").glob("*.sock")} >= {"daphne.sock", "supervisor.sock", "events.sock"}
    # An instance runs with the umask AiKore was started with (022 here), not AiKore's 077; with an
    # apps' user of their own, the group's write bit is kept (002): AiKore's group manages its files.
    instance = Instance.objects.create_instance(name="Umask", blueprint=custom_blueprint(
        "umask-probe", '# aikore.ready: none\numask\ntouch "$INSTANCE_OUTPUT_DIR/made-by-app"\nexec sleep 600\n'))
    instance.start()
    wait_status(instance, "running")
    made = settings.OUTPUTS_DIR / instance.slug / "made-by-app"
    wait_for(made.exists, 10, "the app's file")
    if settings.AIKORE_APP_USER:
        assert mode(made) == 0o664 and "0002" in instance.log_tail(200)
    else:
        assert mode(made) == 0o644 and "0022" in instance.log_tail(200)


def test_make_private_tightens_what_an_older_version_left_open(tmp_path) -> None:
    for name in ("run", "instances"):
        (tmp_path / name).mkdir()
        os.chmod(tmp_path / name, 0o755)
    for name in ("aikore.db", "aikore.db-wal", "secret_key", "admin_password", "huey.db"):
        (tmp_path / name).write_text("x")
        os.chmod(tmp_path / name, 0o644)
    os.chmod(tmp_path, 0o755)
    changed = make_private(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o700
    assert make_private(tmp_path, shared=True) == [tmp_path]  # an apps' user of their own may enter
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o750
    make_private(tmp_path)
    assert all(stat.S_IMODE(os.stat(tmp_path / n).st_mode) == 0o600 for n in ("aikore.db", "aikore.db-wal", "secret_key"))
    assert stat.S_IMODE(os.stat(tmp_path / "instances").st_mode) == 0o755  # the instances' own: untouched
    assert len(changed) == 7
    assert make_private(tmp_path) == []


def test_api_answers_bad_ids_and_unknown_routes_in_json(live, alice) -> None:
    _, raw = ApiToken.issue(alice, "tidy")
    with httpx.Client(headers={"Authorization": f"Bearer {raw}"}, timeout=30) as client:
        for path in ("/api/instances/null", "/api/instances/abc/start", "/api/nope", "/api/instances/1.5/logs"):
            response = client.get(main_url(path))
            assert response.status_code == 404 and "detail" in response.json(), path
        # The create body takes the name the API returns (base_blueprint), or "blueprint".
        for n, key in enumerate(("base_blueprint", "blueprint")):
            created = client.post(main_url("/api/instances"), json={"name": f"Tidy {n}", key: "demo-webui"})
            assert created.status_code == 201, created.text
            assert created.json()["base_blueprint"] == "demo-webui"
        missing = client.post(main_url("/api/instances"), json={"name": "Tidy x"})
        assert missing.status_code == 422 and "base_blueprint" in missing.text
        schema = client.get(main_url("/api/openapi.json")).json()
    create = schema["components"]["schemas"]["InstanceCreate"]["properties"]
    assert create["name"]["pattern"] and create["base_blueprint"]["pattern"]
    low, high = settings.AIKORE_INSTANCE_PORT_RANGE
    port = json.dumps(create["port"])
    assert str(low) in port and str(high) in port
    operation = schema["paths"]["/api/instances"]["post"]
    assert {"401", "403", "422"} <= set(operation["responses"])
    # The docs need a login, and serve Swagger UI from our own static files.
    assert httpx.get(main_url("/api/openapi.json")).status_code == 302
    assert httpx.get(main_url("/api/docs")).status_code == 302


def test_no_url_is_built_from_the_host_header(live, alice) -> None:
    """A forged Host never comes back in a redirect or a page (no absolute URL is built from it)."""
    evil = {"Host": "evil.example:9300"}
    apps = f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}"
    answers = [httpx.get(main_url(path), headers=evil) for path in
               ("/", "/admin/", "/api/docs", "/instance/x/", "/instance/x", "/login/?next=/admin/", "/_aikore/handoff")]
    answers += [httpx.get(apps + path, headers=evil) for path in ("/instance/x/", "/instance/x", "/_aikore/redeem?code=x")]
    with httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session_value(alice)}) as client:
        answers += [client.get(main_url(path), headers=evil) for path in ("/", "/_aikore/handoff?to=apps", "/login/")]
    for response in answers:
        assert "evil.example" not in response.headers.get("location", ""), response.url
        assert "evil.example" not in response.text, response.url
    assert any(r.status_code in (301, 302) for r in answers)
