"""The session cookie: HttpOnly and SameSite=lax always, Secure when the app is served over https."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import RunningApp, start_app
from tests.security.conftest import USERS, create_users

pytestmark = [pytest.mark.llm]


def session_cookie(response: httpx.Response) -> tuple[str, set[str]]:
    """The session token the response sets, and the cookie's attributes (lower case)."""
    cookies = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]
    token = [c for c in cookies if c.startswith("access_token=")]
    assert token, cookies
    value, *attributes = (part.strip() for part in token[0].split(";"))
    return value.split("=", 1)[1], {a.lower() for a in attributes}


async def test_cookie_is_not_secure_on_plain_http(secure_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=secure_app.url) as http:
        login = await http.post("/login", data={"username": "bob", "password": USERS["bob"]})
    _, attributes = session_cookie(login)
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "secure" not in attributes, "a Secure cookie would never come back over http://"


@pytest.mark.own_app
async def test_cookie_is_secure_when_the_public_url_is_https(local_llm: LocalLLMSettings, tmp_path: Path) -> None:
    create_users(tmp_path, dict(os.environ), ("alice",))
    app = start_app(tmp_path, local_llm.port, {"ENSEMBLE_AUTH__PUBLIC_URL": "https://chat.example.com"})
    try:
        async with httpx.AsyncClient(base_url=app.url) as http:
            login = await http.post("/login", data={"username": "alice", "password": USERS["alice"]})
            assert login.status_code == 200
            token, attributes = session_cookie(login)
            assert {"secure", "httponly", "samesite=lax"} <= attributes
            me = await http.get("/user", headers={"Cookie": f"access_token={token}"})
            assert me.status_code == 200 and me.json()["identifier"] == "alice"
            logout = await http.post("/logout", headers={"Cookie": f"access_token={token}"})
            cleared = [v.lower() for k, v in logout.headers.multi_items() if k.lower() == "set-cookie"]
            assert cleared and all("secure" in c for c in cleared), "cleared with the same flags"
    finally:
        app.stop()
