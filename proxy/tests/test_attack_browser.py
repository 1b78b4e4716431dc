"""The attack page (instances/tests/attack.html, served by the isolation probe as a compromised
WebUI would serve it) opened in Chromium by a logged-in admin from every place an app is served:
the apps port, its public port and its host name under AIKORE_APPS_DOMAIN (Chromium resolves
*.aikore.test to 127.0.0.1). It must not read the API, create an instance, change a script, create
a token, read an AiKore cookie or read the dashboard in a frame; the server confirms nothing changed.
A throwaway stack, configured with the apps domain and a slice of the test port ranges."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikore_site.tests.stacks import throwaway_stack
from conftest import TEST_BLUEPRINTS

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOMAIN = "aikore.test"
PASSWORD = "attack-admin-password"


def top_of(variable: str, default: str, count: int) -> str:
    low, high = (int(x) for x in (os.environ.get(variable) or default).split("-"))
    return f"{max(low, high - count + 1)}-{high}"


@pytest.fixture
def attack_stack(tmp_path: Path) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it from Debian)")
    env = {"AIKORE_APPS_DOMAIN": DOMAIN,
           "AIKORE_PUBLIC_PORT_RANGE": top_of("AIKORE_PUBLIC_PORT_RANGE", "29401-29450", 4)}
    with throwaway_stack(tmp_path, "attack-stack", env, admin_password=PASSWORD,
                         instance_port_range=top_of("AIKORE_INSTANCE_PORT_RANGE", "29001-29400", 10)) as stack:
        custom = stack.data_dir / "custom_blueprints"
        custom.mkdir(parents=True, exist_ok=True)
        shutil.copy(TEST_BLUEPRINTS / "isolation.sh", custom / "isolation.sh")
        yield stack


@pytest.fixture
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1, MAP *.{DOMAIN} 127.0.0.1",
        ])
        try:
            yield browser
        finally:
            browser.close()


def login(page, base: str) -> None:
    from playwright.sync_api import expect

    page.goto(base + "/login/?next=/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#username")).to_have_text("admin")


def api(page, base: str, method: str, path: str, data: object = None) -> tuple[int, object]:
    host = re.sub(r"^https?://|:\d+$", "", base)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "aikore_csrftoken" and c["domain"] == host)
    response = page.request.fetch(base + "/api" + path, method=method, data=data,
                                  headers={"X-CSRFToken": token, "Referer": base + "/"})
    return response.status, (response.json() if response.body() else None)


def run_attack(page, url: str) -> dict[str, str]:
    page.goto(url)
    page.wait_for_function("window.__attack && window.__attack.done", timeout=60_000)
    outcome = page.evaluate("window.__attack")
    assert "error" not in outcome, outcome
    return outcome["results"]


def test_the_attack_page_fails_from_every_place_an_app_is_served(attack_stack, chromium) -> None:
    control = attack_stack.base_url
    port = attack_stack.port
    context = chromium.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    login(page, control)
    status, victim = api(page, control, "POST", "/instances", {"name": "Victim", "blueprint": "demo-webui"})
    assert status == 201, victim
    status, attacker = api(page, control, "POST", "/instances", {"name": "Attack", "blueprint": "isolation"})
    assert status == 201, attacker
    _, script_before = api(page, control, "GET", f"/instances/{victim['id']}/script")
    assert api(page, control, "POST", f"/instances/{attacker['id']}/start")[0] == 202
    deadline = time.monotonic() + 60
    while (state := api(page, control, "GET", f"/instances/{attacker['id']}")[1])["status"] != "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["app_origin"] == "host:attack" and state["public_port"]

    query = f"control={control}&victim={victim['id']}"
    places = {
        "apps port": f"{attack_stack.apps_url}/instance/attack/attack?{query}",
        "public port": f"http://127.0.0.1:{state['public_port']}/attack?{query}",
    }
    results = {}
    for where, url in places.items():
        results[where] = run_attack(page, url)
    # Its host name: the dashboard is then at the domain itself (a browser session of its own).
    host_control = f"http://{DOMAIN}:{port}"
    login(page, host_control)
    results["host name"] = run_attack(page, f"http://attack.{DOMAIN}:{port}/attack?control={host_control}&victim={victim['id']}")

    for where, outcome in results.items():
        assert len(outcome) >= 14, (where, outcome)
        failed = {name: value for name, value in outcome.items() if value not in ("blocked", "sent; server decides")}
        assert not failed, (where, failed)

    # The server saw no change: no instance created, the script intact, no token, still logged in.
    status, instances = api(page, control, "GET", "/instances")
    assert status == 200 and sorted(i["name"] for i in instances) == ["Attack", "Victim"], instances
    assert api(page, control, "GET", f"/instances/{victim['id']}/script")[1] == script_before
    tokens = page.request.get(control + "/admin/accounts/apitoken/")
    assert tokens.status == 200 and "attacker-token" not in tokens.text()
    # The planted cookies are gone and the dashboard still works for its user, on both addresses.
    from playwright.sync_api import expect

    for base in (control, host_control):
        page.goto(base + "/")
        expect(page.locator("#conn")).to_have_text("live")
        expect(page.locator("#instances-body tr")).to_have_count(2)
    context.close()
