"""Abuse limits on the running app: sign-in attempts per account and per client address, uploads per
user (rate and size), and concurrent turns per user. The limits are small in this app (conftest.LIMITS).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.browser.conftest import RunningApp
from tests.security.conftest import LIMITS, USERS, png_bytes
from tests.support.chat_client import ChatSocket, signed_in

pytestmark = [pytest.mark.llm]
PER_ACCOUNT = int(LIMITS["LOGIN_FAILURES_PER_ACCOUNT"])
PER_CLIENT = int(LIMITS["LOGIN_FAILURES_PER_CLIENT"])
WINDOW = float(LIMITS["LOGIN_WINDOW"])


async def sign_in(http: httpx.AsyncClient, user: str, password: str, client: str) -> httpx.Response:
    """A sign-in as the front-end posts it, from client address `client` (one proxy hop is trusted)."""
    return await http.post("/login", data={"username": user, "password": password},
                           headers={"X-Forwarded-For": client})


@pytest.fixture
async def http(secure_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secure_app.url, timeout=60) as client:
        yield client


async def test_sign_ins_are_throttled_per_account_for_a_while_only(http: httpx.AsyncClient) -> None:
    statuses, last = [], None
    for attempt in range(30):  # the 30 wrong passwords in a row, now from several addresses
        name = "CAROL" if attempt == 1 else "carol"  # spellings of one account count together
        last = await sign_in(http, name, f"wrong-password-{attempt}", f"198.51.100.{attempt % 3}")
        statuses.append(last.status_code)
    assert statuses[:PER_ACCOUNT] == [401] * PER_ACCOUNT
    assert set(statuses[PER_ACCOUNT:]) == {429}
    assert last is not None
    detail = last.json()["detail"]
    assert detail.startswith("Too many sign-in attempts; try again in ") and detail.endswith(" s.")
    retry_after = int(last.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW
    # the right password is refused too while the account is throttled (from anywhere)...
    refused = await sign_in(http, "carol", USERS["carol"], "198.51.100.77")
    assert refused.status_code == 429
    # ...and accepted once the window has moved on: a throttled account is not locked out for good
    await asyncio.sleep(int(refused.headers["Retry-After"]) + 0.5)
    accepted = await sign_in(http, "carol", USERS["carol"], "198.51.100.77")
    assert accepted.status_code == 200, accepted.text


async def test_parallel_guesses_do_not_slip_past_the_limit(http: httpx.AsyncClient) -> None:
    guesses = [sign_in(http, "dave", f"guess-{n}", f"192.0.2.{n}") for n in range(12)]
    statuses = [r.status_code for r in await asyncio.gather(*guesses)]
    assert statuses.count(401) == PER_ACCOUNT, statuses
    assert statuses.count(429) == len(statuses) - PER_ACCOUNT


async def test_sign_ins_are_throttled_per_client_address(http: httpx.AsyncClient) -> None:
    noisy, quiet = "203.0.113.66", "203.0.113.67"
    for n in range(PER_CLIENT):  # a different (unknown) account each time: only the address adds up
        response = await sign_in(http, f"nobody-{uuid.uuid4().hex[:8]}", "not-the-password", noisy)
        assert response.status_code == 401, n
    blocked = await sign_in(http, "bob", USERS["bob"], noisy)
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.json()["detail"]
    assert (await sign_in(http, "bob", USERS["bob"], quiet)).status_code == 200, "other addresses sign in"


async def test_uploads_are_limited_in_size_before_they_are_read(secure_app: RunningApp) -> None:
    erin = await signed_in(secure_app.url, "erin", USERS["erin"])
    chat = ChatSocket(secure_app.url, erin)
    await chat.connect()
    try:
        too_big = await chat.upload("big.txt", b"x" * (1024 * 1024 + 200 * 1024), "text/plain")
        assert too_big.status_code == 413
        assert too_big.json()["detail"] == "Files are limited to 1 MB."
        # a body without a length (chunked) is refused before it is read
        async def body() -> AsyncIterator[bytes]:
            yield b"--x\r\n"

        chunked = await erin.post("/project/file", params={"session_id": chat.session_id}, content=body(),
                                  headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 411
    finally:
        await chat.close()
        await erin.aclose()


async def test_uploads_are_limited_per_user_and_window(secure_app: RunningApp, bob: httpx.AsyncClient) -> None:
    allowed = int(LIMITS["UPLOADS_PER_WINDOW"])
    erin = await signed_in(secure_app.url, "erin", USERS["erin"])
    chat = ChatSocket(secure_app.url, erin)
    await chat.connect()
    try:
        statuses = [(await chat.upload(f"pic-{n}.png", png_bytes(), "image/png")).status_code
                    for n in range(allowed)]
        assert statuses == [200] * allowed
        refused = await chat.upload("one-more.png", png_bytes(), "image/png")
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith("Too many uploads; try again in ")
        assert 1 <= int(refused.headers["Retry-After"]) <= float(LIMITS["UPLOAD_WINDOW"])
    finally:
        await chat.close()
        await erin.aclose()
    others = ChatSocket(secure_app.url, bob)  # the quota is erin's, not everyone's
    await others.connect()
    try:
        assert (await others.upload("bobs.png", png_bytes(), "image/png")).status_code == 200
    finally:
        await others.close()


async def test_concurrent_turns_are_capped_per_user(secure_app: RunningApp, bob: httpx.AsyncClient) -> None:
    erin = await signed_in(secure_app.url, "erin", USERS["erin"])
    first, second = ChatSocket(secure_app.url, erin), ChatSocket(secure_app.url, erin)  # two tabs
    others = ChatSocket(secure_app.url, bob)
    for chat in (first, second, others):
        await chat.connect()
    try:
        await first.post("/code Write a long, commented Python module with five sorting algorithms.")
        await first.wait_event("new_message")  # the turn runs: its first step is on screen
        refused = await second.send("/memory")
        assert refused.answer == (
            "You already have 1 answer(s) running. Wait for one to finish (or stop it), then send this again."
        )
        assert "remember" in (await others.send("/memory")).answer, "other users are not held up"
        await first.wait_turn()
        assert "remember" in (await second.send("/memory")).answer, "the slot is free again"
    finally:
        for chat in (first, second, others):
            await chat.close()
        await erin.aclose()
