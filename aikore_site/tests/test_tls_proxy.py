"""AiKore behind a TLS-terminating reverse proxy: a real Debian nginx with a self-signed certificate
(made here with openssl) in front of a throwaway stack, as a user would put one. Chromium signs in
over https, writes through the API (CSRF behind the proxy), streams over wss and opens an app on
the apps origin, also behind the proxy; the client address comes from the trusted proxy only."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aikore_site.tests.stacks import ADMIN_USER, ThrowawayStack, kill_group, throwaway_stack

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.slow]

STACK_ADDRESS = "127.0.0.2"  # the stack listens here; the TLS proxy on 127.0.0.1, same port numbers
PROXY_SOURCE = "127.0.0.3"  # the proxy's connections to the stack come from here: the one trusted
CLIENT_ADDRESS = "127.0.0.5"  # a client of the proxy with an address of its own
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

PROXY_CONF = """
daemon off;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
{servers}
}}
"""
SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        client_max_body_size 0;
        location / {{
            proxy_pass http://{stack}:{port};
            proxy_bind {source};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }}
    }}
"""


@pytest.fixture
def tls_stack(tmp_path) -> Iterator[tuple[ThrowawayStack, str]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it from Debian)")
    proxy_dir = tmp_path / "tls-proxy"
    proxy_dir.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(proxy_dir / "key.pem"), "-out", str(proxy_dir / "cert.pem")],
                   check=True, capture_output=True)
    from aikore_site.testing import free_port

    port, apps_port = free_port(), free_port()
    public = f"https://127.0.0.1:{port}"
    env = {"AIKORE_PUBLIC_URL": public, "AIKORE_TRUSTED_PROXIES": PROXY_SOURCE}
    with throwaway_stack(tmp_path, "tls-stack", env, admin_password="tls-admin-password",
                         instance_port_range="30551-30560", bind=STACK_ADDRESS, port=port, apps_port=apps_port) as stack:
        servers = "".join(SERVER.format(port=p, dir=proxy_dir, stack=STACK_ADDRESS, source=PROXY_SOURCE)
                          for p in (port, apps_port))
        user = "user root;" if os.geteuid() == 0 else ""
        (proxy_dir / "nginx.conf").write_text(PROXY_CONF.format(user=user, dir=proxy_dir, servers=servers))
        log = open(proxy_dir / "stdout.log", "wb")
        proc = subprocess.Popen([NGINX, "-p", str(proxy_dir), "-c", str(proxy_dir / "nginx.conf")], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(public + "/api/health", verify=False, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, (proxy_dir / "error.log").read_text()
                time.sleep(0.1)
            yield stack, public
        finally:
            kill_group(proc, timeout=10)
            log.close()


def login_attempt_addresses(stack: ThrowawayStack) -> list[str]:
    with sqlite3.connect(stack.data_dir / "aikore.db") as db:
        return [row[0] for row in db.execute("SELECT address FROM accounts_loginattempt ORDER BY id")]


def test_sign_in_write_stream_and_open_an_app_through_a_tls_proxy(tls_stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    stack, public = tls_stack
    apps_public = f"https://127.0.0.1:{stack.apps_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            context = browser.new_context(ignore_https_errors=True)
            context.set_default_timeout(20_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # Console errors but the expected statuses (the app origin's sign-in answer is a 401, and
            # there is no favicon): a CSP violation or a mixed-content block would show here.
            page.on("console", lambda msg: errors.append(msg.text)
                    if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)

            page.goto(public + "/")
            page.fill("#id_username", ADMIN_USER)
            page.fill("#id_password", stack.admin_password)
            page.click("button[type=submit]")
            expect(page.locator("#username")).to_have_text(ADMIN_USER)
            expect(page.locator("#conn")).to_have_text("live")  # wss through the proxy
            cookies = {c["name"]: c for c in context.cookies()}
            assert cookies["aikore_session"]["secure"] and cookies["aikore_csrftoken"]["secure"]

            # A write with the session: the CSRF check trusts the proxy's https.
            status, body = page.evaluate("""async () => {
                const token = document.querySelector('meta[name="csrf-token"]').content;
                const r = await fetch("/api/instances", {method: "POST", body: JSON.stringify(
                    {name: "Behind TLS", base_blueprint: "demo-webui"}),
                    headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
                return [r.status, await r.json()];
            }""")
            assert status == 201, body
            started = page.evaluate("""async (id) => {
                const token = document.querySelector('meta[name="csrf-token"]').content;
                return (await fetch(`/api/instances/${id}/start`, {method: "POST", headers: {"X-CSRFToken": token}})).status;
            }""", body["id"])
            assert started == 202
            row = page.locator(f'#instances-body tr[data-id="{body["id"]}"] .badge')
            expect(row).to_have_text("running", timeout=30_000)  # pushed over wss

            # The app, on the apps origin behind the proxy too: the hand-off goes by itself.
            page.goto(apps_public + "/instance/behind-tls/")
            expect(page.locator("body")).to_contain_text("Behind TLS", timeout=20_000)
            assert page.url.startswith(apps_public + "/instance/behind-tls/")
            app_cookie = next(c for c in context.cookies() if c["name"] == "aikore_app")
            assert app_cookie["secure"] and app_cookie["httpOnly"]
            assert not errors, errors
        finally:
            browser.close()

    # The client's address is the trusted proxy's word; a client's own X-Forwarded-For is not.
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS, verify=False)
    with httpx.Client(transport=transport, timeout=20) as client:
        client.get(public + "/login/")
        token = client.cookies["aikore_csrftoken"]
        client.post(public + "/login/", data={"username": "someone", "password": "x", "csrfmiddlewaretoken": token},
                    headers={"X-Forwarded-For": "203.0.113.9", "Referer": public + "/login/"})
    # Straight to the stack (not through the proxy): the claimed address and scheme count for nothing.
    with httpx.Client(timeout=20) as direct:
        direct.post(stack.base_url + "/login/", data={"username": "someone", "password": "x"},
                    headers={"X-Forwarded-For": "203.0.113.10", "X-Forwarded-Proto": "https"})
    addresses = login_attempt_addresses(stack)
    assert addresses[0] == "127.0.0.1"  # the browser, through the proxy
    assert CLIENT_ADDRESS in addresses and "203.0.113.9" not in addresses and "203.0.113.10" not in addresses
