"""Behind an auth proxy: the app trusts the proxy's header, and every user gets an opaque account id."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import start_app

pytestmark = [pytest.mark.llm, pytest.mark.own_app]


def test_header_login_makes_accounts_with_opaque_ids(local_llm: LocalLLMSettings, tmp_path: Path) -> None:
    app = start_app(tmp_path, local_llm.port, {"ENSEMBLE_AUTH__MODE": "header"})
    try:
        refused = httpx.post(f"{app.url}/auth/header", timeout=10)
        assert refused.status_code == 401, "no proxy header, no session"
        users = {}
        for email in ("carol@example.com", "carol@example.com.evil", "CAROL@example.com"):
            with httpx.Client(base_url=app.url, timeout=10) as client:
                login = client.post("/auth/header", headers={"X-Forwarded-Email": email})
                assert login.status_code == 200, login.text
                me = client.get("/user")
                assert me.status_code == 200
                users[email] = me.json()
        # the same person (case-insensitive) is one account; a look-alike is another
        ids = {email: user["metadata"]["id"] for email, user in users.items()}
        assert ids["carol@example.com"] == ids["CAROL@example.com"]
        assert ids["carol@example.com"] != ids["carol@example.com.evil"]
        assert all("@" not in account_id for account_id in ids.values()), "ids are opaque, not e-mails"
    finally:
        app.stop()
