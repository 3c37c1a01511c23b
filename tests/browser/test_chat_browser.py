"""The running app in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.browser, pytest.mark.llm]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def app_url(local_llm: LocalLLMSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ensemble up` as a user runs it, reusing the session's local model server."""
    port = free_port()
    data = tmp_path_factory.mktemp("app-data")
    env = {**os.environ, "ENSEMBLE_DATA_DIR": str(data), "ENSEMBLE_LOCAL_LLM__PORT": str(local_llm.port)}
    log = (data / "app.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "chainlit_app.cli", "up", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            pytest.fail(f"the app exited with {process.returncode}: {(data / 'app.log').read_text()[-2000:]}")
        time.sleep(0.5)
    else:
        process.terminate()
        pytest.fail("the app did not answer within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=20)
    log.close()


def test_chat_streams_an_answer_and_shows_the_step(app_url: str, artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's `chromium` package (scripts/dev installs it)")
    request = "/code Write a Python function that returns the square of a number."
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.wait_for_load_state("networkidle")
        composer = page.locator("#chat-input")
        composer.wait_for(timeout=30_000)
        composer.fill(request)
        page.locator("#chat-submit").click()

        # Watch the answer grow: many distinct lengths means it streamed token by token.
        assistant = page.locator("[data-step-type='assistant_message']")
        lengths: list[int] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if assistant.count():
                lengths.append(len(assistant.last.inner_text()))
            if lengths and lengths[-1] > 0 and page.locator("#stop-button").count() == 0:
                break
            time.sleep(0.03)
        step = page.get_by_text(re.compile(r"Used Code \(\d+\.\d s\)"))
        step.wait_for(timeout=10_000)
        step.click()  # open the step: its input and output are shown
        page.wait_for_timeout(500)
        shot = artifacts_dir / "browser-chat.png"
        page.screenshot(path=str(shot), full_page=True)
        body = page.locator("body").inner_text()
        browser.close()

    growth = sorted({n for n in lengths if n > 0})
    assert len(growth) >= 3, f"the answer did not stream (lengths seen: {growth})"
    assert body.count("Write a Python function that returns the square") >= 2, "step input not shown"
    assert "def " in body
    assert shot.exists() and shot.stat().st_size > 10_000


def test_probes_answer_before_the_ui(app_url: str) -> None:
    assert httpx.get(f"{app_url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{app_url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["specialists"]["code"] == "ready"
