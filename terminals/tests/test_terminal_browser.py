"""The Terminal tab in a real browser (Playwright + Debian's chromium) through nginx, as a user
gets it: the shell's environment, closing and reopening the browser tab, a SIGKILL of the web
process (daphne) while the shell runs a loop, resize, copy and paste; and no tab for non-staff."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from aikore_site.tests.test_dashboard_browser import (  # noqa: F401 (fixtures)
    VIEWPORT,
    api,
    browser,
    login,
    page,
    row_for,
    shot,
)
from instances.tests.helpers import custom_blueprint, wait_for
from terminals import consumers

pytestmark = [pytest.mark.browser, pytest.mark.stack]

TEXT = "() => window.aikore.terminal.text()"


def terminal_text(tab) -> str:
    return tab.evaluate(TEXT)


def wait_text(tab, pattern: str, timeout: float = 20.0) -> re.Match:
    """Until the terminal's rendered text (xterm.js's buffer, scrollback included) matches."""
    regex = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    while True:
        text = terminal_text(tab)
        match = regex.search(text)
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in the terminal:\n{text[-3000:]}\nstatus: "
                                 f"{tab.locator('#terminal-status').text_content()}")
        time.sleep(0.1)


def open_terminal(tab, name: str) -> None:
    row_for(tab, name).locator("td.name").click()
    tab.click("#tab-terminal")
    tab.wait_for_function("() => window.aikore.terminal.term && window.aikore.terminal.text().trim().length > 0")


def type_line(tab, text: str) -> None:
    tab.locator("#terminal-view .xterm").click()
    tab.keyboard.type(text)
    tab.keyboard.press("Enter")


def ticks(tab) -> list[int]:
    return [int(n) for n in re.findall(r"^tick-(\d+)$", terminal_text(tab), re.M)]


def test_terminal_tab_environment_persistence_and_web_process_restart(page, browser, live) -> None:  # noqa: F811
    bp = custom_blueprint("term-browser", "# aikore.ready: none\nexec sleep 100000\n")
    from playwright.sync_api import expect

    login(page)
    status, created = api(page, "POST", "/instances", {"name": "Shell Host", "blueprint": bp})
    assert status == 201, created
    api(page, "POST", f"/instances/{created['id']}/start")
    wait_for(lambda: api(page, "GET", f"/instances/{created['id']}")[1]["status"] == "running", 30, "running")
    instance = api(page, "GET", f"/instances/{created['id']}")[1]
    directory = Path(settings.INSTANCES_DIR) / instance["slug"]
    fake_python = directory / "env" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text("#!/bin/sh\necho fake\n")
    fake_python.chmod(0o755)

    open_terminal(page, "Shell Host")
    type_line(page, "echo $WEBUI_PORT")
    wait_text(page, rf"^{instance['port']}$")
    type_line(page, "which python")
    wait_text(page, rf"^{re.escape(str(fake_python))}$")
    # The shell's size is the pane's (xterm.js fit), and follows it when the pane changes.
    type_line(page, "stty size")
    rows, cols = page.evaluate("() => [window.aikore.terminal.term.rows, window.aikore.terminal.term.cols]")
    wait_text(page, rf"^{rows} {cols}$")
    page.set_viewport_size({"width": VIEWPORT["width"] - 200, "height": VIEWPORT["height"]})
    page.wait_for_function(f"() => window.aikore.terminal.term.cols < {cols}")
    type_line(page, "clear; stty size")
    rows, cols = page.evaluate("() => [window.aikore.terminal.term.rows, window.aikore.terminal.term.cols]")
    wait_text(page, rf"^{rows} {cols}$")

    # Copy: select and Ctrl+Shift+C puts the text on the clipboard; paste types it into the shell.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.base)
    page.evaluate("() => window.aikore.terminal.term.selectAll()")
    page.keyboard.press("Control+Shift+C")
    page.wait_for_function("async () => (await navigator.clipboard.readText()).includes('stty size')")
    page.evaluate("() => navigator.clipboard.writeText('echo pasted-$((6*7))')")
    page.keyboard.press("Control+Shift+V")
    page.keyboard.press("Enter")
    wait_text(page, r"^pasted-42$")

    # A flood: output keeps flowing, but what the page holds unparsed stays within the server's
    # window (the page acknowledges what xterm.js parsed), and Ctrl+C gets through.
    type_line(page, "yes 'a flood of text'")
    samples = []
    for _ in range(6):
        time.sleep(0.25)
        samples.append(page.evaluate("() => [window.aikore.terminal.received, window.aikore.terminal.processed]"))
    assert samples[-1][0] > samples[0][0] + 10_000, samples  # it flows
    assert max(received - processed for received, processed in samples) <= consumers.WINDOW + consumers.READ_CHUNK
    page.keyboard.press("Control+C")
    type_line(page, "clear; echo calm-$((6*7))")
    wait_text(page, r"^calm-42$", timeout=15)

    type_line(page, "for i in $(seq 1 100000); do echo tick-$i; sleep 0.2; done")
    wait_text(page, r"^tick-3$")
    shot(page, "terminal-01-loop")

    # Close the browser tab; open the dashboard again: the earlier output and the loop are there.
    context = page.context
    page.close()
    time.sleep(1)
    page = context.new_page()
    page.base = live.base_url
    page.goto(page.base + "/")
    open_terminal(page, "Shell Host")
    wait_text(page, r"^tick-1$")
    before = max(ticks(page))
    wait_text(page, rf"^tick-{before + 2}$")
    assert ticks(page) == list(range(1, max(ticks(page)) + 1)), "scrollback and screen overlap or miss lines"

    # SIGKILL the web process: supervisord restarts it, the page reconnects, the shell ran on.
    daphne = psutil.Process(int(live.supervisorctl("pid", "daphne").strip()))
    daphne.kill()
    daphne.wait(5)
    killed_at = max(ticks(page))
    page.wait_for_function("() => document.querySelector('#terminal-status').textContent.startsWith('Disconnected')")
    wait_text(page, rf"^tick-{killed_at + 10}$", timeout=40)
    assert page.locator("#terminal-status").text_content() == "Connected."
    shot(page, "terminal-02-after-web-restart")

    # The shell exits: the tab says so; "New shell" (no question asked for a dead one) starts another.
    page.locator("#terminal-view .xterm").click()
    page.keyboard.press("Control+C")
    type_line(page, "exit")
    expect(page.locator("#terminal-status")).to_have_text(re.compile("The shell has ended"))
    page.click("#terminal-new")
    expect(page.locator("#terminal-status")).to_have_text("Connected.")
    type_line(page, "echo fresh-$((6*7))")
    wait_text(page, r"^fresh-42$")
    assert "tick-" not in terminal_text(page)
    page.close()


def test_no_terminal_tab_for_users_who_may_not_open_one(bob, browser, live) -> None:  # noqa: F811
    context = browser.new_context(viewport=VIEWPORT)
    bobs = context.new_page()
    bobs.base = live.base_url
    login(bobs, "bob", "bob-password")
    assert bobs.locator("#tab-terminal").count() == 0
    assert bobs.locator("#panel-terminal").count() == 0
    context.close()
