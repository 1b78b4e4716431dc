"""A real Gradio app (gradio from PyPI, pinned; instances/tests/gradio_app.py, nothing AiKore-specific
in it) behind AiKore, in Chromium: streaming output, a 5 MB upload and a chat turn, on the apps port
(under /instance/<slug>/, told its root by GRADIO_ROOT_PATH) and on its public port (where Gradio
asks for the prefixed paths, which the public port accepts).

Gradio is installed once into a cached venv (aikore_site/tests/cache.py: AIKORE_TEST_CACHE) and
reused by later runs; the test is skipped, saying so, only when the package index is unreachable."""

from __future__ import annotations

import fcntl
import hashlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from aikore_site.tests.cache import cache_dir
from instances.models import Instance, InstanceStatus
from instances.tests.helpers import custom_blueprint, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.slow]

GRADIO = "gradio==6.31.0"
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CACHE = cache_dir()
UPLOAD = hashlib.sha256(b"gradio").digest() * (5 * 1024 * 1024 // 32)  # 5 MiB


def gradio_python() -> Path:
    """The cached venv's python, created (under a lock: parallel runs share it) on first use."""
    venv = CACHE / GRADIO.replace("==", "-")
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".gradio.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".complete").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", GRADIO],
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            output = result.stdout + result.stderr
            if re.search(r"Could not find a version|No matching distribution|NewConnectionError|Network is unreachable|"
                         r"Temporary failure in name resolution|Max retries exceeded", output):
                pytest.skip(f"cannot install {GRADIO}: the package index is unreachable ({output.strip()[-300:]})")
            raise RuntimeError(f"pip install {GRADIO} failed:\n{output[-3000:]}")
        (venv / ".complete").write_text(GRADIO + "\n")
    return python


@pytest.fixture
def gradio_blueprint() -> str:
    python = gradio_python()
    return custom_blueprint("gradio-test", f"""#!/usr/bin/env bash
# aikore.name: Gradio (test)
# aikore.category: Testing
# aikore.ready: http /
# aikore.ready_timeout: 180
export GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT="$WEBUI_PORT" GRADIO_ANALYTICS_ENABLED=False
exec {shlex.quote(str(python))} {shlex.quote(str(REPO / "instances" / "tests" / "gradio_app.py"))}
""")


@pytest.fixture
def gradio_instance(live, alice, gradio_blueprint) -> Instance:
    """Started before the browser: Playwright's event loop and Django's ORM cannot share a thread."""
    instance = Instance.objects.create_instance(name="Gradio test", blueprint=gradio_blueprint)
    instance.start()
    instance = wait_status(instance, InstanceStatus.RUNNING, timeout=180)
    instance.refresh_from_db()
    return instance


@pytest.fixture
def chromium(gradio_instance) -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make test installs it from Debian)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


def exercise(page, url: str, where: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#count")).to_be_visible(timeout=60_000)
    assert page.url.startswith(url), (where, page.url)

    # Streaming: the ticks arrive one by one, not all at the end.
    page.click("#count")
    ticks = page.locator("#ticks textarea")
    page.wait_for_function("""() => {
        const box = document.querySelector('#ticks textarea');
        return box && box.value.includes('tick 1') && !box.value.includes('tick 5');
    }""", timeout=30_000)
    expect(ticks).to_have_value(re.compile(r"tick 5"), timeout=30_000)

    # A 5 MB upload reaches the app intact.
    page.set_input_files("#upload input[type=file]", files=[
        {"name": "five.bin", "mimeType": "application/octet-stream", "buffer": UPLOAD}])
    expect(page.locator("#upload-info textarea")).to_have_value(
        f"{len(UPLOAD)} bytes sha256 {hashlib.sha256(UPLOAD).hexdigest()}", timeout=60_000)

    # A chat turn.
    chat_box = page.locator("textarea").last
    chat_box.fill(f"hello from the {where}")
    chat_box.press("Enter")
    expect(page.get_by_text(f"echo: hello from the {where}")).to_be_visible(timeout=30_000)


def test_gradio_on_the_apps_port_and_on_its_public_port(live, gradio_instance, chromium) -> None:
    from playwright.sync_api import expect

    instance = gradio_instance
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live.base_url}/login/?next=/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "alice-password")
        page.click("button[type=submit]")
        expect(page.locator("#username")).to_have_text("alice")
        # First visit: signed in through the hand-off (and, should nginx's reload lag "running" by
        # its ~100 ms, the status page reloads itself until the app answers).
        exercise(page, f"http://127.0.0.1:{settings.AIKORE_APPS_PORT}{instance.url_path}", "apps port")
        exercise(page, f"http://127.0.0.1:{instance.public_port}/", "public port")
    finally:
        context.close()
    assert not errors, errors
