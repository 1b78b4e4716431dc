"""The Content-Security-Policy in Chromium: every dashboard view, the admin's pages, the sign-in and
two-factor pages, the API docs and AiKore's pages on the app origin run without a single policy
violation (no inline script without its nonce, nothing from elsewhere), and the headers say what
they should."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings

from aikore_site.tests.test_dashboard_browser import browser, login  # noqa: F401 (fixtures)
from instances.models import Instance
from instances.tests.helpers import wait_status

pytestmark = [pytest.mark.browser, pytest.mark.stack]

# Report every violation to the page itself, so none is missed between console reads.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
    (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.fixture
def csp_instances(live) -> tuple[Instance, Instance]:
    """A running and a stopped instance, made before the browser starts (Playwright's event loop and
    the ORM do not mix)."""
    running = Instance.objects.create_instance(name="Csp Demo", blueprint="demo-webui")
    running.start()
    wait_status(running, "running")
    return running, Instance.objects.create_instance(name="Csp Stopped", blueprint="demo-webui")


def test_no_policy_violations_anywhere(csp_instances, browser, live, alice) -> None:  # noqa: F811
    from playwright.sync_api import expect

    running, stopped = csp_instances
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(20_000)
    context.add_init_script(WATCH)
    page = context.new_page()
    page.base = live.base_url
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{page.url}: {msg.text}")
            if "Content Security Policy" in msg.text or "Refused to" in msg.text else None)
    violations: list[str] = []

    def collect() -> None:
        violations.extend(f"{page.url}: {v}" for v in page.evaluate("window.__csp || []"))

    def visit(url: str, ready: str | None = None) -> None:
        page.goto(url)
        if ready:
            expect(page.locator(ready).first).to_be_visible()
        page.wait_for_timeout(300)
        collect()

    visit(live.base_url + "/login/", "#id_username")
    login(page)
    # The dashboard: every tab, the dialogs, the charts, the editor and the framed app.
    page.locator("#instances-body tr", has_text="Csp Demo").locator("td.name").click()
    expect(page.locator("#log-view")).to_contain_text("demo WebUI", timeout=30_000)
    page.click("#tab-script")
    expect(page.locator(".cm-editor")).to_be_visible()
    page.click("#tab-view")
    frame = page.frame_locator("#view-frame")
    expect(frame.locator("body")).to_contain_text("Csp Demo", timeout=20_000)
    page.click("#new-instance")
    expect(page.locator("#instance-dialog")).to_be_visible()
    page.click("#form-cancel")
    page.click("#help-button")
    page.keyboard.press("Escape")
    page.click("#theme-toggle")
    expect(page.locator('[data-chart="cpu"]')).to_be_visible()
    collect()
    # The rest of the control plane.
    visit(live.base_url + "/api/docs", ".swagger-ui .info")
    visit(live.base_url + "/account/two-factor/", "#two-factor-qr svg")
    for path in ("/admin/", "/admin/instances/instance/", f"/admin/instances/instance/{running.pk}/change/",
                 "/admin/auth/user/", f"/admin/auth/user/{alice.pk}/change/", "/admin/accounts/apitoken/add/",
                 "/admin/accounts/loginattempt/", "/admin/auth/group/"):
        visit(live.base_url + path, "#content")
    # AiKore's own pages on the app origin: a stopped instance's status page.
    apps = f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}"
    visit(apps + stopped.url_path, "#status-title")
    visit(live.base_url + f"/_aikore/start/{stopped.slug}/?to=apps", "#start-confirm")
    context.close()
    assert not violations, violations
    assert not console, console


def test_security_headers(live, alice) -> None:
    from proxy.tests.helpers import main_url, session_value

    with httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session_value(alice)}, timeout=20) as client:
        page = client.get(main_url("/"))
        csp = page.headers["content-security-policy"]
        script_src = re.search(r"script-src ([^;]+)", csp).group(1)
        assert "'nonce-" in script_src and "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
        nonce = re.search(r"'nonce-([^']+)'", script_src).group(1)
        assert f'<script type="importmap" nonce="{nonce}">' in page.text
        assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp
        assert "camera=()" in page.headers["permissions-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        static = client.get(main_url("/static/aikore/main.js"))
        assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"
    # App-origin pages may be framed by the control plane only.
    signin = httpx.get(f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}/instance/anything/")
    assert f"frame-ancestors *:{settings.AIKORE_PORT}" in signin.headers["content-security-policy"]
    origins_js = httpx.get(f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}/_aikore/origins.js")
    assert origins_js.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
def viewer_and_instance(live, viewer) -> Instance:
    return Instance.objects.create_instance(name="Watched", blueprint="demo-webui")


def test_a_viewer_is_offered_only_what_a_viewer_may_do(viewer_and_instance, browser, live) -> None:  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.base = live.base_url
    login(page, "viewer", "viewer-password")
    row = page.locator("#instances-body tr", has_text="Watched")
    expect(row).to_have_count(1)
    expect(page.locator("#admin-link")).to_have_count(0)
    for hidden in ("#new-instance", "#detail-edit"):
        expect(page.locator(hidden)).to_be_hidden()
    for action in ("start", "stop", "restart", "clone", "delete"):
        expect(row.locator(f"[data-action={action}]")).to_be_hidden()
    expect(row.locator("[data-action=open]")).to_be_visible()
    expect(row.locator("input[data-action=autostart]")).to_be_disabled()
    row.locator("td.name").click()
    page.click("#tab-script")
    expect(page.locator(".cm-content")).to_have_attribute("aria-readonly", "true")
    page.locator(".cm-content").click()
    page.keyboard.type("rm -rf /")
    expect(page.locator(".cm-content")).not_to_contain_text("rm -rf")
    expect(page.locator("#script-save")).to_be_hidden()
    # Keyboard shortcuts offer nothing either ("s" would start the selected instance).
    page.locator("#instances-pane").focus()
    page.keyboard.press("n")
    expect(page.locator("#instance-dialog")).to_be_hidden()
    context.close()
