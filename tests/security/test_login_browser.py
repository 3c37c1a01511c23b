"""In Chromium: after too many wrong passwords the login page says why, and for how long."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, browser  # noqa: F401 (the Chromium fixture)
from tests.security.conftest import LIMITS

pytestmark = [pytest.mark.browser, pytest.mark.llm]


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
