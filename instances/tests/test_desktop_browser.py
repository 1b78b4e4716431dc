"""The desktop in the dashboard, in a real browser (Playwright + Debian's chromium) through nginx: the
View tab shows a persistent demo instance's desktop with noVNC on the apps origin (after the
hand-off), its canvas is not blank, the view-only switch and the clipboard panel work, and closing
the dashboard tab and opening it again finds the same kiosk browser with the app's websocket still
the one it opened."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
import psutil
import pytest

from aikore_site.tests.test_dashboard_browser import (  # noqa: F401 (fixtures)
    VIEWPORT,
    api,
    browser,
    login,
    page,
    row_for,
    shot,
)
from instances import supervisor
from instances.tests.helpers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.slow]

# How many distinct colours the noVNC canvas shows (a blank or black screen has one or two).
CANVAS_COLOURS = """() => {
  const canvas = document.querySelector("#screen canvas");
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 97) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  return seen.size;
}"""


def kiosk_pid(instance_id: int) -> int:
    info = supervisor.desktop_info(instance_id, "kiosk")
    assert info and info["statename"] in ("STARTING", "RUNNING") and info["pid"], info
    return info["pid"]


def open_desktop(tab, name: str) -> str:
    """Select the instance, open the View tab: its desktop connects in the frame (through the
    hand-off on the first visit). Returns the viewer's URL."""
    from playwright.sync_api import expect

    row_for(tab, name).locator("td.name").click()
    tab.click("#tab-view")
    expect(tab.locator("#view-mode")).to_be_visible()
    expect(tab.locator("#view-mode-desktop")).to_have_attribute("aria-pressed", "true")
    tab.wait_for_function("() => document.querySelector('#view-frame').src.includes('/desktop/')")
    viewer = tab.frame_locator("#view-frame")
    expect(viewer.locator("#desktop-status")).to_have_text(f"{name}: desktop", timeout=30_000)
    expect(viewer.locator("#screen canvas")).to_be_visible()
    return tab.locator("#view-frame").get_attribute("src")


def connected_viewer(context, url: str):
    """The viewer in a tab of its own (same browser, so the app cookie of the hand-off), connected."""
    viewer = context.new_page()
    viewer.goto(url)
    viewer.wait_for_function("() => window.aikoreDesktop && window.aikoreDesktop.connected", timeout=30_000)
    return viewer


def wait_api_status(tab, instance_id: int, status: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _code, body = api(tab, "GET", f"/instances/{instance_id}")
        if body["status"] == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"status {body['status']!r}, wanted {status!r}: {body['error_message']}")
        time.sleep(0.1)


def test_the_desktop_in_the_view_tab(browser, live, alice):  # noqa: F811
    # No ORM here: Playwright's sync API runs an event loop in this thread (the API instead).
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.base = live.base_url
    login(tab)
    code, created = api(tab, "POST", "/instances", {"name": "Desk View", "blueprint": "demo-webui",
                                                    "persistent_mode": True})
    assert code == 201, created
    api(tab, "POST", f"/instances/{created['id']}/start")
    instance = wait_api_status(tab, created["id"], "running")
    stats_url = f"http://127.0.0.1:{instance['port']}/stats"
    wait_for(lambda: httpx.get(stats_url).json()["websockets_open"] == 1, 30, "the kiosk page's websocket")
    browser_pid = kiosk_pid(instance["id"])
    url = open_desktop(tab, "Desk View")
    shot(tab, "desktop-view")
    frame = connected_viewer(context, url)
    # The remote desktop follows the page's size, and shows something (the kiosk's page).
    wait_for(lambda: frame.evaluate(CANVAS_COLOURS) > 8, 15, "a non-blank noVNC canvas")
    box = frame.evaluate("() => { const s = document.querySelector('#screen'); return [s.clientWidth, s.clientHeight]; }")
    assert box != [1280, 800]
    canvas = "() => { const c = document.querySelector('#screen canvas'); return [c.width, c.height]; }"
    # (noVNC floors the box's fractional size)
    wait_for(lambda: all(abs(a - b) <= 1 for a, b in zip(frame.evaluate(canvas), box, strict=True)), 15,
             f"the desktop resized to the page ({box})")
    box = frame.evaluate(canvas)
    # ... and the X server itself has that size now (RandR).
    def x_size() -> list[int]:
        out = subprocess.run(["xdpyinfo", "-display", f":{instance['vnc_display']}"], capture_output=True,
                             text=True, timeout=10).stdout
        match = re.search(r"dimensions:\s+(\d+)x(\d+) pixels", out)
        return [int(match.group(1)), int(match.group(2))] if match else []

    wait_for(lambda: x_size() == box, 10, f"the X screen at {box} (it is {x_size()})")

    # The clipboard, both ways: text sent from the panel lands on the desktop's clipboard (read back
    # by an X client), text copied on the desktop shows up in the panel.
    frame.click("#clipboard-toggle")
    frame.fill("#clipboard-text", "from the browser 42")
    frame.click("#clipboard-send")
    display = f":{instance['vnc_display']}"
    wait_for(lambda: subprocess.run(["xclip", "-o", "-selection", "clipboard", "-display", display],
                                    capture_output=True, text=True, timeout=5).stdout == "from the browser 42",
             10, "the text on the desktop's clipboard")
    copier = subprocess.Popen(["xclip", "-i", "-selection", "clipboard", "-display", display], stdin=subprocess.PIPE)
    copier.communicate(b"from the desktop 7", timeout=5)
    wait_for(lambda: frame.input_value("#clipboard-text") == "from the desktop 7", 10, "the desktop's text in the panel")

    # View only: noVNC stops sending input (the property the library honours for keys and pointer).
    frame.check("#view-only")
    assert frame.evaluate("() => window.aikoreDesktop.rfb.viewOnly") is True
    frame.uncheck("#view-only")
    assert frame.evaluate("() => window.aikoreDesktop.rfb.viewOnly") is False

    # Close the dashboard tab (and the viewer); open another: the same kiosk browser, the app's one
    # websocket still up, never reconnected.
    before = httpx.get(stats_url).json()
    frame.close()
    tab.close()
    time.sleep(1.0)
    tab = context.new_page()
    tab.base = live.base_url
    tab.goto(live.base_url + "/")
    url = open_desktop(tab, "Desk View")
    frame = connected_viewer(context, url)
    wait_for(lambda: frame.evaluate(CANVAS_COLOURS) > 8, 15, "the desktop again")
    assert kiosk_pid(instance["id"]) == browser_pid and psutil.pid_exists(browser_pid)
    after = httpx.get(stats_url).json()
    assert after["websockets_open"] == 1 and after["websockets_total"] == before["websockets_total"] == 1, (before, after)
    frame.close()

    # The App button shows the app itself; the choice is the user's.
    tab.click("#view-mode-app")
    tab.wait_for_function("() => !document.querySelector('#view-frame').src.includes('/desktop/')")
    api(tab, "POST", f"/instances/{instance['id']}/stop")
    wait_api_status(tab, instance["id"], "stopped", 30)
    context.close()
