"""Real nginx on loopback, in the live stack: the dashboard, API, static files and websockets
through AIKORE_PORT; the demo WebUI (page, SSE, websocket) under /instance/<slug>/ and on its
public port, behind the login; reloads that keep other websockets open; a broken template that
nginx -t catches while the old config keeps serving."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from websockets.sync.client import ClientConnection, connect

from aikore_site.tests.stacks import stack_client
from conftest import stack_env
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import wait_for, wait_status
from proxy import nginx
from proxy.render import template_source
from proxy.tests.helpers import app_client, apps_url, grant_app_access, main_url, routed

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]


def cookie_header(client: httpx.Client) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in client.cookies.items())}


def start_demo(name: str, client: httpx.Client) -> Instance:
    instance = Instance.objects.create_instance(name=name, blueprint="demo-webui")
    instance.start()
    instance = wait_status(instance, InstanceStatus.RUNNING)
    wait_for(lambda: routed(client, apps_url(f"{instance.url_path}health")), 15, f"{instance.slug} through nginx")
    instance.refresh_from_db()
    return instance


def ws_connect(url: str, client: httpx.Client, origin: str | None = None, **headers: str) -> ClientConnection:
    return connect(url, additional_headers={**cookie_header(client), **headers}, origin=origin, open_timeout=10)


def echo(conn: ClientConnection, text: str) -> str:
    conn.send(text)
    return conn.recv(timeout=10)


def test_dashboard_api_static_and_websocket_through_nginx(live, alice) -> None:
    with stack_client(main_url(), timeout=15) as browser:
        response = browser.get("/")
        assert response.status_code == 302 and response.headers["location"].startswith("/login/?next=/")
        login_page = browser.get("/login/")
        assert login_page.status_code == 200
        response = browser.post("/login/", data={
            "username": "alice", "password": "alice-password", "next": "/",
            "csrfmiddlewaretoken": browser.cookies[settings.CSRF_COOKIE_NAME],
        })
        assert response.status_code == 302 and response.headers["location"] == "/"
        assert browser.get("/").status_code == 200
        assert isinstance(browser.get("/api/instances").json(), list)
        assert browser.get("/admin/").status_code == 200
        # Static files come from STATIC_ROOT through nginx (daphne serves none with DEBUG off).
        css = browser.get("/static/admin/css/base.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert css.content == (Path(settings.STATIC_ROOT) / "admin" / "css" / "base.css").read_bytes()
        origin = main_url()
        with ws_connect(f"ws://127.0.0.1:{settings.AIKORE_PORT}/ws/instances/", browser, Origin=origin) as conn:
            assert '"snapshot"' in conn.recv(timeout=10)
    assert httpx.get(main_url("/api/health")).json()["status"] == "ok"


def test_demo_webui_on_the_apps_port_and_on_its_public_port(live, alice) -> None:
    with app_client(alice) as client:
        demo = start_demo("Proxied demo", client)
        prefix = demo.url_path
        page = client.get(apps_url(prefix))
        assert page.status_code == 200 and re.search(r"<title>[^<]*AiKore Demo WebUI", page.text)
        assert client.get(apps_url(prefix + "env")).json()["SUBFOLDER"] == prefix
        # nginx adds the slash an app's relative links need.
        bare = client.get(apps_url(prefix.rstrip("/")))
        assert bare.status_code == 301 and bare.headers["location"].endswith(prefix)
        with client.stream("GET", apps_url(prefix + "events"), params={"count": 2}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            body = stream.read().decode()
        assert re.fullmatch(r"data: 1 \S+\n\ndata: 2 \S+\n\n", body), body
        apps_ws = f"ws://127.0.0.1:{settings.AIKORE_APPS_PORT}{prefix}ws"
        with ws_connect(apps_ws, client, origin=apps_url()) as conn:
            assert echo(conn, "through nginx") == "through nginx"
            big = "x" * 200_000
            assert echo(conn, big) == big

        assert demo.public_port, "no public port allocated"
        grant_app_access(client, f"port:{demo.public_port}")
        public = f"127.0.0.1:{demo.public_port}"
        assert client.get(f"http://{public}/env").json()["WEBUI_PORT"] == str(demo.port)
        # The public port also takes the instance's prefix (Gradio apps told their root path ask so).
        assert client.get(f"http://{public}{prefix}env").json()["WEBUI_PORT"] == str(demo.port)
        with client.stream("GET", f"http://{public}/events", params={"count": 1}) as stream:
            assert stream.read().decode().startswith("data: 1 ")
        with ws_connect(f"ws://{public}/ws", client, origin=f"http://{public}") as conn:
            assert echo(conn, "public port") == "public port"
        # The main port only points the browser at the apps port, for every path alike.
        moved = client.get(main_url(prefix + "env"))
        assert moved.status_code == 200 and 'appOrigin("apps")' in moved.text
        unknown = client.get(main_url("/instance/no-such-thing/"))
        assert re.sub(r'nonce="[^"]+"', "", unknown.text) == re.sub(r'nonce="[^"]+"', "", moved.text)


def test_start_and_stop_of_one_instance_keeps_websockets_to_another(live, alice) -> None:
    with app_client(alice) as client:
        first = start_demo("Steady", client)
        grant_app_access(client, f"port:{first.public_port}")
        url = f"ws://127.0.0.1:{settings.AIKORE_APPS_PORT}{first.url_path}ws"
        public_ws = f"ws://127.0.0.1:{first.public_port}/ws"
        with ws_connect(url, client) as conn, ws_connect(public_ws, client) as public:
            assert echo(conn, "before") == "before"
            reloads_before = nginx.last_status()["at"]
            second = start_demo("Comes and goes", client)
            assert nginx.last_status()["at"] > reloads_before  # the config really was reloaded
            assert echo(conn, "during") == "during" and echo(public, "during") == "during"
            second.stop()
            wait_status(second, InstanceStatus.STOPPED)
            # Its route is gone: the apps port shows its status page instead.
            wait_for(lambda: client.get(apps_url(f"{second.url_path}health")).status_code == 503, 15, "route removed")
            assert echo(conn, "after") == "after" and echo(public, "after") == "after"
            # The same connections, not new ones: the page's websocket never dropped.
            assert conn.close_code is None and public.close_code is None


def test_broken_template_is_caught_and_the_old_config_stays_live(live, alice, settings) -> None:
    low, high = stack_env()["AIKORE_PUBLIC_PORT_RANGE"].split("-")
    settings.AIKORE_PUBLIC_PORT_RANGE = (int(low), int(high))  # render as the stack does
    with app_client(alice) as client:
        demo = start_demo("Survivor", client)
        live_config = nginx.config_path().read_text()
        broken = template_source().replace("worker_connections 4096;", "worker_connections many;")
        result = nginx.regenerate(broken)
        assert not result.ok and not result.reloaded and "invalid number \"many\"" in result.error
        assert nginx.config_path().read_text() == live_config
        assert nginx.last_status()["ok"] is False
        assert client.get(apps_url(f"{demo.url_path}health")).text == "ok"
        assert client.get(main_url("/api/instances")).status_code == 200
        repaired = nginx.regenerate()
        assert repaired.ok and nginx.last_status()["ok"] is True
        assert client.get(apps_url(f"{demo.url_path}health")).text == "ok"


def test_only_this_machine_reads_which_configuration_nginx_serves(live) -> None:
    """/_aikore/generation is /api/health's: from loopback it answers; from any other address,
    403 (nginx's `return` runs before allow/deny would, so the check is an `if` on a geo)."""
    import ipaddress
    import socket

    import psutil

    # (A regeneration from an earlier test's stop may still be landing: wait for it.)
    wait_for(lambda: httpx.get(main_url("/_aikore/generation")).text == nginx.expected_generation(), 10,
             "nginx serving the current configuration")
    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback]
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    with httpx.Client(transport=httpx.HTTPTransport(local_address=others[0])) as client:
        assert client.get(main_url("/_aikore/generation")).status_code == 403
        assert client.get(main_url("/api/health")).status_code == 200  # the rest is not affected
