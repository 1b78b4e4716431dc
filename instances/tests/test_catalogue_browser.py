"""The create form's app catalogue in a real browser: the stock apps as cards by category with their
facts (GPU memory, how each is reached, what it needs and downloads, its home page), search and
category filters, keyboard use, picking ComfyUI names the instance, and an instance being edited
shows its app alone."""

from __future__ import annotations

import pytest

from aikore_site.tests.test_dashboard_browser import api, browser, login, page, row_for, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.stack]


def test_pick_comfyui_from_the_catalogue(page, live):  # noqa: F811
    from playwright.sync_api import expect

    login(page)
    page.click("#new-instance")
    dialog = page.locator("#instance-dialog")
    expect(dialog).to_be_visible()
    cards = page.locator("#bp-list .bp-card")
    comfy = page.locator('#bp-list .bp-card[data-id="comfyui"]')
    expect(comfy).to_be_visible()
    # Cards say what the app is and what it takes; categories come in the catalogue's order.
    expect(comfy).to_contain_text("ComfyUI")
    expect(comfy).to_contain_text("GPU memory: 8 GB")
    expect(comfy).to_contain_text("under /instance/<name>/")
    expect(comfy.locator("a.bp-home")).to_have_attribute("href", "https://github.com/Comfy-Org/ComfyUI")
    expect(page.locator('#bp-list .bp-card[data-id="ai-toolkit"]')).to_contain_text("Needs: Node.js >= 20.9")
    expect(page.locator('#bp-list .bp-card[data-id="ai-toolkit"]')).to_contain_text("a port or host name of its own")
    expect(page.locator('#bp-list .bp-card[data-id="fooocus"]')).to_contain_text("Downloads: first start")
    groups = page.locator("#bp-list .bp-group").all_inner_texts()
    assert [g.strip().title() for g in groups][:4] == ["Image", "Video", "Training", "Tools"], groups
    ids = page.locator("#bp-list input[name=bp-choice]").evaluate_all("xs => xs.map(x => x.value)")
    assert "functions" not in ids and "99-test-logs" not in ids and len(ids) >= 13
    shot(page, "catalogue-01-all")

    # A category filter, then back to all.
    page.get_by_role("button", name="Training", exact=True).click()
    expect(page.get_by_role("button", name="Training", exact=True)).to_have_attribute("aria-pressed", "true")
    visible = sorted(c.get_attribute("data-id") for c in cards.all() if c.is_visible())
    assert visible == ["ai-toolkit", "fluxgym", "kohya_ss", "onetrainer"], visible
    page.get_by_role("button", name="All", exact=True).click()

    # Search, then Enter picks the first match (and does not submit the form); the name follows.
    page.fill("#bp-search", "node based")
    expect(comfy).to_be_visible()
    expect(page.locator('#bp-list .bp-card[data-id="forge"]')).to_be_hidden()
    page.fill("#bp-search", "nothing-like-this")
    expect(page.locator("#bp-empty")).to_be_visible()
    page.fill("#bp-search", "comfy")
    page.press("#bp-search", "Enter")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("radio", name="ComfyUI")).to_be_checked()
    expect(page.locator("#f-name")).to_have_value("ComfyUI")
    expect(page.locator("#bp-desc")).to_contain_text("ComfyUI: Node-based UI")
    shot(page, "catalogue-02-comfyui")

    # The radio group works from the keyboard: arrows move the choice among the visible apps.
    page.fill("#bp-search", "")
    page.get_by_role("radio", name="ComfyUI").focus()
    page.keyboard.press("ArrowDown")
    second = page.locator("#bp-list input:checked").get_attribute("value")
    assert second != "comfyui"
    expect(page.locator("#f-name")).not_to_have_value("ComfyUI")  # still the form's own name: it follows
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("radio", name="ComfyUI")).to_be_checked()
    expect(page.locator("#f-name")).to_have_value("ComfyUI")

    page.click("#form-submit")
    expect(dialog).to_be_hidden()
    status, body = api(page, "GET", "/instances")
    assert status == 200 and [(i["name"], i["base_blueprint"]) for i in body] == [("ComfyUI", "comfyui")]
    assert body[0]["python_version"] == "3.12" and body[0]["proxy_mode"] == "strip"

    # A second one gets a name of its own; without a pick the form says to pick an app.
    page.click("#new-instance")
    page.click("#form-submit")
    expect(page.locator("#err-blueprint")).to_have_text("Pick an app in the catalogue.")
    page.check('#bp-list input[value="comfyui"]')
    expect(page.locator("#f-name")).to_have_value("ComfyUI 2")
    expect(page.locator("#err-blueprint")).to_be_empty()
    page.click("#form-cancel")

    # Editing shows the instance's app alone, not changeable.
    row_for(page, "ComfyUI").locator("td.name").click()
    page.click("#detail-edit")
    # The dialog opens at once and fills in after fetching the blueprints: wait for the filled form
    # (the search box is hidden while the dialog is still closed too, so it proves nothing alone).
    expect(page.locator("#instance-dialog-title")).to_have_text("Edit “ComfyUI”")
    expect(page.locator("#bp-list .bp-card:not([hidden])")).to_have_count(1)
    expect(page.locator("#bp-search")).to_be_hidden()
    visible = [c.get_attribute("data-id") for c in cards.all() if c.is_visible()]
    assert visible == ["comfyui"], visible
    expect(page.locator("#bp-list input:checked")).to_be_disabled()
    shot(page, "catalogue-03-edit")
    page.click("#form-cancel")
