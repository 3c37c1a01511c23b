"""The running app in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import USERS, RunningApp, login, send

pytestmark = [pytest.mark.browser, pytest.mark.llm]


def test_chat_streams_an_answer_and_shows_the_step(app: RunningApp, browser: Any, artifacts_dir: Path) -> None:
    page = login(browser, app.url, "alice")
    lengths = send(page, "/code Write a Python function that returns the square of a number.")
    step = page.get_by_text(re.compile(r"Used Code \(\d+\.\d s\)"))
    step.wait_for(timeout=10_000)
    step.click()  # open the step: its input and output are shown
    page.wait_for_timeout(500)
    shot = artifacts_dir / "browser-chat.png"
    page.screenshot(path=str(shot), full_page=True)
    body = page.locator("body").inner_text()
    page.context.close()

    growth = sorted({n for n in lengths if n > 0})
    assert len(growth) >= 3, f"the answer did not stream (lengths seen: {growth})"
    assert body.count("Write a Python function that returns the square") >= 2, "step input not shown"
    assert "def " in body
    assert shot.exists() and shot.stat().st_size > 10_000


def test_wrong_password_is_refused(app: RunningApp, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(app.url)
    page.locator("#email").fill("alice")
    page.locator("#password").fill("not-her-password")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_timeout(1500)
    assert page.locator("#chat-input").count() == 0
    context.close()


def test_probes_answer_before_the_ui(app: RunningApp) -> None:
    assert httpx.get(f"{app.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{app.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["specialists"]["code"] == "ready"


def test_the_browser_socket_is_compressed(app: RunningApp, browser: Any) -> None:
    """Chromium offers permessage-deflate and the server accepts it: streamed events travel compressed."""
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    handshakes: list[dict[str, Any]] = []
    cdp.on("Network.webSocketHandshakeResponseReceived", lambda event: handshakes.append(event))
    page.goto(app.url)
    page.locator("#email").fill("alice")
    page.locator("#password").fill(USERS["alice"])
    page.get_by_role("button", name="Sign In").click()
    page.locator("#chat-input").wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    context.close()

    assert handshakes, "the page opened no websocket"
    headers = {k.lower(): v for k, v in handshakes[-1]["response"]["headers"].items()}
    assert handshakes[-1]["response"]["status"] == 101
    assert "permessage-deflate" in headers.get("sec-websocket-extensions", ""), headers
