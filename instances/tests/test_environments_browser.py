"""The dashboard's environment views in a real browser: the install step and its progress bar under
the status badge, the environment fields and their errors in the form, apps only in the blueprint
list, and a delete dialog that says what goes."""

from __future__ import annotations

import pytest

from aikore_site.tests.test_dashboard_browser import api, browser, login, page, row_for, shot  # noqa: F401
from instances.tests.test_environments import blueprint, upstream, wheels  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def test_install_progress_form_fields_and_delete_dialog(page, live, wheels, upstream):  # noqa: F811
    from playwright.sync_api import expect

    bp = blueprint("browserenv", upstream, extra='    aikore_step "warming up" 3 4\n    sleep 2\n')
    login(page)
    status, created = api(page, "POST", "/instances", {"name": "Env Browser", "blueprint": bp, "torch_variant": "cpu"})
    assert status == 201, created
    row = row_for(page, "Env Browser")
    row.locator("td.name").click()
    row.get_by_role("button", name="Start Env Browser", exact=True).click()

    # The step and its progress, pushed over the websocket while the blueprint installs.
    expect(row.locator(".badge")).to_have_text("installing", timeout=60_000)
    expect(row.locator(".install-step")).to_have_text("warming up", timeout=30_000)
    expect(row.locator("progress.install-bar")).to_have_js_property("value", 0.75)
    shot(page, "env-01-installing")
    expect(row.locator(".badge")).to_have_text("running", timeout=60_000)
    expect(row.locator(".install")).to_have_count(0)

    # The form shows the environment fields; a bad value is refused next to its field.
    page.click("#detail-edit")
    expect(page.locator("#f-torch_variant")).to_have_value("cpu")
    expect(page.locator("#f-parent")).to_be_disabled()
    page.fill("#f-torch_variant", "gpu")
    page.click("#form-submit")
    expect(page.locator("#err-torch_variant")).to_contain_text("cu128")
    page.click("#form-cancel")

    # New instances are made from apps only: no library, no test script.
    page.click("#new-instance")
    expect(page.locator("#f-parent option", has_text="Env Browser")).to_have_count(1)  # the form is filled
    options = page.locator("#bp-list input[name=bp-choice]").evaluate_all("xs => xs.map(x => x.value)")
    assert "demo-webui" in options and "functions" not in options and "99-test-logs" not in options
    page.click("#form-cancel")

    # Delete says what goes; its code checkout is the user's, so trash is preselected.
    row.get_by_role("button", name="Delete Env Browser", exact=True).click()
    text = page.locator("#ask-text")
    expect(text).to_contain_text("the code checkout")
    expect(text).to_contain_text("the shared models")
    expect(page.locator("#ask-check")).to_be_checked()
    shot(page, "env-02-delete-dialog")
    page.click("#ask-cancel")
    expect(row).to_have_count(1)
