"""The notifications dialog in a real browser (Playwright + Debian's chromium) against the live
stack: add a target (a bad URL gets its message; the saved one comes back masked), send a test to a
local webhook, switch kinds per target and per instance, and watch an event arrive live in the
history with its delivery status. A non-staff user never sees the targets."""

from __future__ import annotations

import re
import threading

import pytest

from aikore_site.tests.test_dashboard_browser import api, browser, login, page, shot  # noqa: F401
from instances.models import Instance

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def in_thread(fn) -> None:
    """Django's ORM refuses to run in the thread where Playwright's sync API keeps its event loop."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


def test_settings_and_history_in_the_dashboard(page, live, webhook) -> None:  # noqa: F811
    from playwright.sync_api import expect

    login(page)
    status, inst = api(page, "POST", "/instances", {"name": "Bell Demo", "blueprint": "crashloop"})
    assert status == 201, inst

    page.click("#notify-button")
    dialog = page.locator("#notify-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#notify-history-empty")).to_be_visible()

    # Targets: a URL Apprise can't use is refused with its message; a good one is added, masked.
    page.click("#notify-tab-targets")
    page.fill("#notify-name", "Hook")
    page.fill("#notify-url", "http://example.org/hook")
    page.click("#notify-add-submit")
    expect(page.locator("#notify-add-error")).to_contain_text("Apprise cannot use this http:// URL")
    secret_url = webhook.url + "secret-path-123"
    page.fill("#notify-url", secret_url)
    page.click("#notify-add-submit")
    row = page.locator("#notify-targets-body tr", has_text="Hook")
    expect(row).to_have_count(1)
    expect(row.locator("code.masked")).to_have_text(f"json://127.0.0.1:{webhook.port}/…")
    expect(page.locator("#notify-add-error")).to_be_hidden()
    assert "secret-path-123" not in page.content()

    # The test button reaches the webhook and the row says so.
    row.get_by_role("button", name="Send test").click()
    expect(row.locator("td.status")).to_contain_text("✓ sent")
    assert webhook.titles() == ["AiKore: test notification"]

    # Kinds per target: this one no longer takes "Finished".
    row.locator("details.kinds summary").click()
    row.locator('input[data-kind="finished"]').uncheck()
    expect(row.locator("details.kinds summary")).to_have_text("7/8 kinds")
    status, targets = api(page, "GET", "/notifications/targets")
    assert "finished" not in targets[0]["kinds"] and "failed" in targets[0]["kinds"]
    shot(page, "notifications-targets")

    # Kinds per instance: Bell Demo mutes "Install finished".
    page.click("#notify-tab-instances")
    box = page.get_by_label("Bell Demo: Install finished")
    expect(box).to_be_checked()
    with page.expect_response(re.compile(r"/api/notifications/instances/\d+$")) as saved:
        box.uncheck()
    assert saved.value.status == 200
    status, prefs = api(page, "GET", f"/notifications/instances/{inst['id']}")
    assert "install_finished" not in prefs["kinds"] and "failed" in prefs["kinds"]

    # An event while the dialog is closed: a toast and an unread count, then the history shows it
    # live with its delivery to the hook.
    page.click("#notify-close")
    expect(dialog).to_be_hidden()

    def fail_it() -> None:
        from instances.models import Instance
        from instances.signals import instance_event

        instance = Instance.objects.get(pk=inst["id"])
        instance_event.send(sender=Instance, instance=instance, kind="failed", exit_code=3,
                            reason="Crashed 4 times in a row", log_tail="Traceback: boom\n")

    in_thread(fail_it)
    expect(page.locator("#notify-unread")).to_have_text("1")
    expect(page.locator(".toast", has_text="Bell Demo failed")).to_be_visible()
    page.click("#notify-button")
    expect(page.locator("#notify-panel-history")).to_be_visible()
    event = page.locator("#notify-events li").first
    expect(event.locator(".notify-title")).to_have_text("AiKore: Bell Demo failed")
    expect(event.locator(".chip.delivery")).to_have_text("✓ Hook", timeout=15_000)
    event.locator("summary").click()
    expect(event.locator(".notify-message")).to_contain_text("Traceback: boom")
    expect(page.locator("#notify-unread")).to_be_hidden()
    webhook.wait(lambda h: h.titles("Bell Demo failed"), 10, "the failed message")
    shot(page, "notifications-history")


def test_non_staff_sees_history_but_no_targets(live, bob, viewer, browser) -> None:  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context()
    try:
        page = context.new_page()
        page.base = live.base_url
        login(page, "bob", "bob-password")
        page.click("#notify-button")
        expect(page.locator("#notify-panel-history")).to_be_visible()
        expect(page.locator("#notify-tab-targets")).to_be_hidden()
        expect(page.locator("#notify-tab-instances")).to_be_visible()
        # An operator chooses each instance's kinds; a viewer sees them, not offered (the API says 403).
        in_thread(lambda: Instance.objects.create_instance(name="Bell Matrix", blueprint="demo-webui"))
        page.reload()
        page.click("#notify-button")
        page.click("#notify-tab-instances")
        expect(page.locator("#notify-matrix-body input").first).to_be_enabled()
    finally:
        context.close()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.base = live.base_url
        login(page, "viewer", "viewer-password")
        page.click("#notify-button")
        page.click("#notify-tab-instances")
        expect(page.locator("#notify-matrix-body input").first).to_be_disabled()
    finally:
        context.close()

