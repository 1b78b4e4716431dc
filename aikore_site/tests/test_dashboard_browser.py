"""The dashboard in a real browser: Playwright drives Debian's chromium (headless) against the live
stack through nginx, as a user would. Screenshots of the main views at 1280x720 land in
artifacts/screenshots/ (not committed)."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = [pytest.mark.browser, pytest.mark.stack]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 720}
PASSWORD = "alice-password"  # the alice fixture's


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
def browser(live, alice) -> Iterator[object]:
    """A fresh chromium per test. It is started after the database fixtures and closed before
    their teardown: Playwright's sync API runs an event loop that Django's ORM refuses to share."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it from Debian)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.base = live.base_url
    page.apps = f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}"
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page, username: str = "alice", password: str = PASSWORD) -> None:
    from playwright.sync_api import expect

    page.goto(page.base + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page.locator("#username")).to_have_text(username)
    expect(page.locator("#conn")).to_have_text("live")


def api(page, method: str, path: str, data: object = None) -> tuple[int, object]:
    """Call the API with the browser's session (and CSRF token), as the page's scripts do."""
    token = next((c["value"] for c in page.context.cookies() if c["name"] == "aikore_csrftoken"), "")
    response = page.request.fetch(page.base + "/api" + path, method=method, data=data,
                                  headers={"X-CSRFToken": token, "Referer": page.base + "/"})
    body = response.json() if response.body() else None
    return response.status, body


def row_for(page, name: str):
    return page.locator("#instances-body tr", has=page.locator("td.name strong", has_text=re.compile(f"^{re.escape(name)}$")))


def select_and_start(page, name: str, blueprint: str) -> None:
    """Create an instance through the API, select its row and press its Start button."""
    status, created = api(page, "POST", "/instances", {"name": name, "blueprint": blueprint})
    assert status == 201, created
    row = row_for(page, name)
    row.locator("td.name").click()
    row.get_by_role("button", name=f"Start {name}", exact=True).click()


def watch_badge(page, instance_id: str) -> None:
    """Record every status the row's badge shows, and mark the page so a reload would be noticed."""
    page.evaluate(
        """(id) => {
            window.__noReload = true;
            window.__seen = [];
            const row = document.querySelector(`#instances-body tr[data-id="${id}"]`);
            const record = () => {
                const badge = row.querySelector(".badge");
                const status = badge && badge.dataset.status;
                if (status && window.__seen[window.__seen.length - 1] !== status) window.__seen.push(status);
            };
            record();
            new MutationObserver(record).observe(row, { subtree: true, childList: true, attributes: true });
        }""",
        instance_id,
    )


def test_instance_lifecycle_through_the_dashboard(page, live) -> None:
    from playwright.sync_api import expect

    login(page)
    shot(page, "01-dashboard-empty")

    # Create an instance of the demo blueprint through the form.
    page.click("#new-instance")
    expect(page.locator("#instance-dialog")).to_be_visible()
    page.fill("#f-name", "Browser Demo")
    page.check('#bp-list input[value="demo-webui"]')
    expect(page.locator("#bp-desc")).not_to_be_empty()
    shot(page, "02-create-form")
    page.click("#form-submit")
    expect(page.locator("#instance-dialog")).to_be_hidden()
    row = row_for(page, "Browser Demo")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("stopped")
    instance_id = row.get_attribute("data-id")
    status, body = api(page, "GET", f"/instances/{instance_id}")
    assert status == 200 and body["base_blueprint"] == "demo-webui"

    # Start it: the badge goes starting -> running, pushed over the websocket (no reload).
    watch_badge(page, instance_id)
    row.get_by_role("button", name="Start Browser Demo", exact=True).click()
    expect(row.locator(".badge")).to_have_text("running", timeout=60_000)
    seen = page.evaluate("window.__seen")
    assert "starting" in seen and seen[-1] == "running", seen
    assert seen.index("starting") < seen.index("running"), seen
    assert page.evaluate("window.__noReload") is True

    # Its log lines appear in the console (selected after creation).
    expect(page.locator("#detail-title")).to_have_text("Browser Demo")
    expect(page.locator("#log-view")).to_contain_text("demo WebUI for instance 'Browser Demo'", timeout=30_000)
    expect(page.locator("#log-status")).to_contain_text("live")
    shot(page, "03-running-logs")

    # Embedded in the View pane: the frame signs in on the apps port through the hand-off by itself
    # (the first visit there), then shows the app. The demo page's request shows up in the log.
    page.click("#tab-view")
    frame = page.frame_locator("#view-frame")
    expect(frame.locator("h1")).to_have_text("AiKore Demo WebUI")
    # ... and in a new tab, on the apps port (its own origin).
    page.click("#tab-logs")
    with page.context.expect_page() as new_tab:
        row.get_by_role("link", name="Open Browser Demo").click()
    tab = new_tab.value
    tab.wait_for_load_state()
    expect(tab).to_have_url(f"{page.apps}/instance/browser-demo/")
    expect(tab).to_have_title("AiKore Demo WebUI - Browser Demo")
    tab.close()
    page.click("#tab-view")
    shot(page, "04-view-embedded")

    # Edit and save its script with the code editor (shell highlighting on).
    page.click("#tab-script")
    editor = page.locator("#script-editor .cm-content")
    expect(editor).to_contain_text("aikore_exec")
    assert page.locator("#script-editor .cm-line span[class]").count() > 5, "no syntax highlighting"
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# edited in the browser test\n")
    expect(page.locator("#script-save")).to_have_text("Save •")
    shot(page, "05-script-editor")
    page.click("#script-save")
    expect(page.locator("#script-status")).to_contain_text("Saved launch.sh")
    status, body = api(page, "GET", f"/instances/{instance_id}/script")
    assert status == 200 and "# edited in the browser test" in body["content"]
    page.fill("#blueprint-name", "browser-saved")
    page.click("#script-save-blueprint")
    expect(page.locator("#script-status")).to_contain_text("Saved as custom blueprint “browser-saved”")
    status, blueprints = api(page, "GET", "/blueprints")
    assert any(bp["id"] == "browser-saved" and bp["custom"] for bp in blueprints)

    # Stop it.
    page.click("#tab-logs")
    row.get_by_role("button", name="Stop Browser Demo", exact=True).click()
    expect(row.locator(".badge")).to_have_text("stopped", timeout=30_000)

    # Delete it (confirmation dialog).
    row.get_by_role("button", name="Delete Browser Demo", exact=True).click()
    expect(page.locator("#ask-dialog")).to_be_visible()
    page.click("#ask-ok")
    expect(row).to_have_count(0)
    expect(page.locator("#instances-empty")).to_be_visible()
    status, body = api(page, "GET", "/instances")
    assert status == 200 and body == []
    assert page.evaluate("window.__noReload") is True


def test_invalid_form_input_shows_the_api_message_next_to_the_field(page, live) -> None:
    from playwright.sync_api import expect

    login(page)
    page.click("#new-instance")
    page.fill("#f-name", "bad/name")
    page.check('#bp-list input[value="demo-webui"]')  # an app must be picked (the catalogue says so)
    page.click("#form-submit")
    name_error = page.locator("#err-name")
    expect(name_error).to_contain_text("Name may contain letters")
    expect(page.locator("#f-name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#instance-dialog")).to_be_visible()
    # It is the API's own message, word for word.
    status, body = api(page, "POST", "/instances", {"name": "bad/name", "blueprint": "demo-webui"})
    assert status == 422
    assert name_error.inner_text() == body["errors"]["name"][0]
    shot(page, "06-form-validation")

    # Typing clears the field's error; a port outside the range is refused by the API.
    page.fill("#f-name", "Valid name")
    expect(name_error).to_be_empty()
    page.check("input[name=port_mode][value=manual]")
    page.fill("#f-port", "80")
    page.click("#form-submit")
    expect(page.locator("#err-port")).to_contain_text("outside the instance port range")
    expect(page.locator("#f-port")).to_have_attribute("aria-invalid", "true")

    # A name that is taken: 409 from the API, shown on the name field.
    status, _ = api(page, "POST", "/instances", {"name": "Taken", "blueprint": "demo-webui"})
    assert status == 201
    page.check("input[name=port_mode][value=auto]")
    page.fill("#f-name", "taken")
    page.click("#form-submit")
    expect(name_error).to_contain_text("already exists")
    page.click("#form-cancel")
    expect(page.locator("#instance-dialog")).to_be_hidden()

    # Editing: a bad output folder is refused next to its field; a good edit is saved.
    row = row_for(page, "Taken")
    row.locator("td.name").click()
    page.click("#detail-edit")
    expect(page.locator("#f-name")).to_have_value("Taken")
    expect(page.locator("#bp-list input:checked")).to_be_disabled()  # the catalogue shows its app, locked
    page.fill("#f-output_path", "../outside")
    page.click("#form-submit")
    expect(page.locator("#err-output_path")).not_to_be_empty()
    page.fill("#f-output_path", "renders")
    page.fill("#f-launch_args", "--greeting hello")
    page.click("#form-submit")
    expect(page.locator("#instance-dialog")).to_be_hidden()
    status, body = api(page, "GET", "/instances")
    assert body[0]["output_path"] == "renders" and body[0]["launch_args"] == "--greeting hello"

    # The autostart toggle saves at once.
    row.get_by_role("checkbox", name="Autostart Taken").check()
    page.wait_for_function("() => true")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = api(page, "GET", "/instances")
        if body[0]["autostart"]:
            break
        time.sleep(0.1)
    assert body[0]["autostart"] is True


def test_monitoring_charts_render_with_data(page, live) -> None:
    from playwright.sync_api import expect

    login(page)
    cpu = page.locator('[data-chart="cpu"]')
    expect(cpu).to_be_visible()
    # History first, then streaming: the number of points keeps growing.
    page.wait_for_function("() => Number(document.querySelector('[data-chart=cpu]').dataset.points) >= 2")
    before = int(cpu.get_attribute("data-points"))
    page.wait_for_function(
        "(n) => Number(document.querySelector('[data-chart=cpu]').dataset.points) > n", arg=before, timeout=15_000
    )
    for key in ("cpu", "ram"):
        chart = page.locator(f'[data-chart="{key}"]')
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart.locator(".now")).not_to_be_empty()
        drawn = page.evaluate(
            """(key) => {
                const canvas = document.querySelector(`[data-chart="${key}"] canvas`);
                const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                let ink = 0;
                for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
                return ink;
            }""",
            key,
        )
        assert drawn > 100, f"{key} chart canvas is blank"
    status, gpus = api(page, "GET", "/system/gpus")
    assert status == 200
    if gpus["available"] and gpus["gpus"]:
        expect(page.locator('[data-chart^="gpu"]')).to_have_count(2 * len(gpus["gpus"]))
        expect(page.locator("#gpu-missing")).to_be_hidden()
    else:
        expect(page.locator("#gpu-missing")).to_be_visible()
        expect(page.locator("#gpu-missing")).to_contain_text("No GPU detected")
        expect(page.locator('[data-chart^="gpu"]')).to_have_count(0)
    expect(page.locator("#monitor-summary")).to_contain_text("CPU")
    shot(page, "07-monitoring")

    # Per-instance bars appear for a running instance.
    status, created = api(page, "POST", "/instances", {"name": "Monitored", "blueprint": "demo-webui"})
    assert status == 201
    api(page, "POST", f"/instances/{created['id']}/start")
    expect(page.locator(f'#instance-usage .row[data-instance="{created["id"]}"]')).to_contain_text("CPU", timeout=60_000)
    shot(page, "08-monitoring-instance")

    # Dark theme, then the tablet layout.
    page.click("#theme-toggle")
    assert page.evaluate("getComputedStyle(document.documentElement).colorScheme") == "dark"
    expect(cpu.locator("canvas")).to_have_count(1)
    shot(page, "09-dark-theme")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.set_viewport_size({"width": 820, "height": 1180})
    expect(page.locator("#detail-pane")).to_be_visible()
    shot(page, "10-tablet")


def test_theme_follows_the_system_until_one_is_chosen(browser, live) -> None:
    """No saved theme: the system's light/dark preference, live; a saved theme wins over it."""
    context = browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    page = context.new_page()
    scheme = "[document.documentElement.dataset.theme, getComputedStyle(document.documentElement).colorScheme]"

    def system_turns_light() -> None:
        # Listeners run in the order they were added: once this one has run, theme.js's has too.
        page.evaluate("() => { window.__changed = new Promise(resolve => matchMedia('(prefers-color-scheme: dark)')"
                      ".addEventListener('change', resolve, {once: true})); }")
        page.emulate_media(color_scheme="light")
        page.evaluate("window.__changed")

    try:
        page.goto(live.base_url + "/login/")
        assert page.evaluate(scheme) == ["dark", "dark"]
        system_turns_light()
        assert page.evaluate(scheme) == ["light", "light"]
        page.emulate_media(color_scheme="dark")
        page.evaluate("localStorage.setItem('aikore-theme', 'dark')")
        page.reload()
        assert page.evaluate(scheme) == ["dark", "dark"]
        system_turns_light()  # a saved choice is not overridden
        assert page.evaluate(scheme) == ["dark", "dark"]
    finally:
        context.close()


def test_chatty_log_stays_capped_and_responsive(page, live) -> None:
    """floodlog prints 100k lines as fast as it can: the console keeps a bounded DOM, reaches the
    last line, and the page keeps answering."""
    from playwright.sync_api import expect

    login(page)
    select_and_start(page, "Flood", "floodlog")
    started = time.monotonic()
    worst = 0.0
    while time.monotonic() - started < 60:
        t0 = time.monotonic()
        last = page.evaluate("() => { const v = document.querySelector('#log-view'); return v.lastElementChild && v.lastElementChild.textContent; }")
        worst = max(worst, time.monotonic() - t0)
        if last == "100000":
            break
        time.sleep(0.2)
    expect(page.locator("#log-view .ln").last).to_have_text("100000")
    lines = page.locator("#log-view > div").count()
    assert lines <= 5100, f"{lines} lines in the DOM"
    assert worst < 2.0, f"page blocked for {worst:.1f} s"
    # Search filters the kept lines.
    page.fill("#log-search", "99999")
    expect(page.locator("#log-matches")).to_have_text("1 match")
    page.fill("#log-search", "")
    # Pause freezes the view; Clear empties it.
    page.click("#log-pause")
    expect(page.locator("#log-pause")).to_have_attribute("aria-pressed", "true")
    page.click("#log-pause")
    page.click("#log-clear")
    expect(page.locator("#log-view .ln")).to_have_count(0)


def test_ansi_colours_and_progress_bars(page, live) -> None:
    from playwright.sync_api import expect

    login(page)
    select_and_start(page, "Colours", "99-test-logs")
    view = page.locator("#log-view")
    expect(view).to_contain_text("colour check after line 10", timeout=30_000)
    expect(view).to_contain_text("progress: 100%|##########| 10/10")
    coloured = view.locator(".ln", has_text="colour check after line 10").locator("span.b").first
    assert coloured.evaluate("n => getComputedStyle(n).color") != coloured.evaluate(
        "n => getComputedStyle(n.closest('.log')).color"
    )
    assert "\x1b" not in view.inner_text()
    # The carriage-return redraws of one bar are one line, not eleven.
    bars = view.locator(".ln", has_text="progress:")
    texts = bars.all_inner_texts()
    assert texts and all(t.startswith("progress: 100%") or t == texts[-1] for t in texts), texts
    shot(page, "11-log-colours")


def test_login_admin_links_and_logout(page, live) -> None:
    from playwright.sync_api import expect

    page.goto(page.base + "/login/")
    shot(page, "00-login")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "wrong-password")
    page.click("button[type=submit]")
    expect(page.locator("#login-errors")).to_contain_text("correct username and password")
    login(page)
    page.click("#admin-link")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    page.click("#aikore-dashboard-link")
    expect(page.locator("#username")).to_have_text("alice")
    page.click("#logout-button")
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto(page.base + "/")
    expect(page).to_have_url(re.compile(r"/login/"))


@pytest.fixture
def gpu_stack(tmp_path) -> Iterator[object]:
    """A second, throwaway stack whose sampler reads two demo GPUs (AIKORE_FAKE_GPUS, the synthetic
    NVML source: this machine has no GPU). Its own data dir, port and admin account."""
    from aikore_site.tests.stacks import throwaway_stack

    with throwaway_stack(tmp_path, "gpu-stack", {"AIKORE_FAKE_GPUS": "2"}, admin_password="gpu-admin-password",
                         instance_port_range="29451-29500") as stack:
        yield stack


def test_gpu_panels_and_gpu_choice_with_synthetic_gpus(browser, gpu_stack) -> None:
    """With GPUs present: a chart pair per GPU, GPU checkboxes in the form, the chosen GPU reaching
    the instance as CUDA_VISIBLE_DEVICES, and GPU gauges in /metrics."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.base = gpu_stack.base_url
    try:
        page.goto(gpu_stack.base_url + "/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "gpu-admin-password")
        page.click("button[type=submit]")
        expect(page.locator("#conn")).to_have_text("live")
        expect(page.locator("#gpu-missing")).to_be_hidden()
        expect(page.locator('[data-chart^="gpu"]')).to_have_count(4)
        for chart in page.locator('[data-chart^="gpu"]').all():
            expect(chart.locator("canvas")).to_have_count(1)
        expect(page.locator("#monitor-summary")).to_contain_text("GPU")
        # Host PIDs from NVML in a container (pid_match "unavailable"): the dashboard says how to get
        # per-instance VRAM; with matching PIDs it says nothing.
        notes = page.evaluate("""async () => {
            const { vramNote } = await import("/static/aikore/monitor.js");
            return [vramNote({gpu: {available: true, pid_match: "unavailable"}}),
                    vramNote({gpu: {available: true, pid_match: "pids"}})];
        }""")
        assert "pid: host" in notes[0] and "--pid=host" in notes[0] and notes[1] == ""

        page.click("#new-instance")
        boxes = page.locator("#f-gpus input[name=gpu]")
        expect(boxes).to_have_count(2)
        expect(page.locator("#f-gpus")).to_contain_text("RTX A6000 (synthetic)")
        page.fill("#f-name", "On GPU One")
        page.check('#bp-list input[value="demo-webui"]')
        page.check('#f-gpus input[value="1"]')
        shot(page, "12-create-form-gpus")
        page.click("#form-submit")
        expect(page.locator("#instance-dialog")).to_be_hidden()
        row = row_for(page, "On GPU One")
        expect(row.locator("td.gpu")).to_have_text("GPU1")
        row.get_by_role("button", name="Start On GPU One", exact=True).click()
        expect(row.locator(".badge")).to_have_text("running", timeout=60_000)
        # "running" means the app answers on its port; nginx serves the new route once its reload
        # has swapped workers, which can be ~100 ms later (proxy/tests wait for it the same way).
        # The app is on the apps port: a page there signs in through the hand-off, as a user would.
        app = context.new_page()
        deadline = time.monotonic() + 15
        while True:
            app.goto(gpu_stack.apps_url + "/instance/on-gpu-one/env")
            app.wait_for_url(re.compile(r"/instance/on-gpu-one/env$"))
            text = app.locator("body").inner_text()
            if text.lstrip().startswith("{"):
                break
            assert time.monotonic() < deadline, f"route not served: {text[:200]}"
            time.sleep(0.2)
        env = json.loads(text)
        assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        shot(page, "13-monitoring-gpus")

        metrics = page.request.get(gpu_stack.base_url + "/metrics").text()
        assert "aikore_gpu_available 1.0" in metrics
        assert metrics.count("aikore_gpu_memory_total_bytes{") == 2
        assert 'aikore_instance_running{instance_id="' in metrics and 'slug="on-gpu-one"' in metrics
        row.get_by_role("button", name="Stop On GPU One", exact=True).click()
        expect(row.locator(".badge")).to_have_text("stopped", timeout=30_000)
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
