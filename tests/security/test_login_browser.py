"""In Chromium: after too many wrong passwords the login page says why, and for how long; a refused
upload says why in the composer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, browser  # noqa: F401 (the Chromium fixture)
from tests.security.conftest import LIMITS, USERS

pytestmark = [pytest.mark.browser, pytest.mark.llm]


def login(browser: Any, url: str, user: str, password: str) -> Any:  # noqa: F811
    """A fresh context signed in as `user` (from its own address, so as not to use up 127.0.0.1's sign-ins)."""
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "198.18.0.2"})
    page = context.new_page()
    page.goto(url)
    page.locator("#email").fill(user)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.locator("#chat-input").wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")  # the socket session exists (uploads need it)
    return page


def test_login_page_shows_the_throttle_message(secure_app: RunningApp, browser: Any,  # noqa: F811
                                               artifacts_dir: Path) -> None:
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "198.18.0.1"})
    page = context.new_page()
    try:
        page.goto(secure_app.url)
        for attempt in range(int(LIMITS["LOGIN_FAILURES_PER_ACCOUNT"]) + 1):
            page.locator("#email").fill("frank")
            page.locator("#password").fill(f"wrong-password-{attempt}")
            with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST"):
                page.get_by_role("button", name="Sign In").click()
        # the form says it in words, the notice says how long exactly
        page.get_by_text("Too many sign-in attempts; try again in a few minutes.").wait_for(timeout=10_000)
        notice = page.get_by_text(re.compile(r"Too many sign-in attempts; try again in \d+ s\.")).first
        notice.wait_for(timeout=10_000)
        page.screenshot(path=str(artifacts_dir / "login-throttled.png"))
    finally:
        context.close()


def test_composer_says_why_an_upload_is_refused(secure_app: RunningApp, browser: Any,  # noqa: F811
                                                tmp_path: Path) -> None:
    big = tmp_path / "too-big.txt"
    big.write_bytes(b"x" * (1024 * 1024 + 300 * 1024))
    page = login(browser, secure_app.url, "grace", USERS["grace"])
    try:
        page.locator("#upload-button-input").set_input_files([str(big)])
        page.get_by_text("Failed to upload too-big.txt: Files are limited to 1 MB.").wait_for(timeout=30_000)
    finally:
        page.context.close()
