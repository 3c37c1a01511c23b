"""core.limits: sliding windows, the sign-in throttle, upload quotas and the concurrent-turn cap."""

from __future__ import annotations

import asyncio

from core.limits import ConcurrencyCap, Limits, MemoryHits, SlidingWindow, wait_text
from core.settings import LimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock, **overrides: object) -> Limits:
    settings = LimitSettings(login_window=60, login_failures_per_account=3, login_failures_per_client=5,
                             **overrides)  # type: ignore[arg-type]
    return Limits.from_settings(settings, max_file_bytes=10_000, clock=clock)


async def test_window_refuses_past_the_limit_and_says_how_long_to_wait() -> None:
    clock = Clock()
    window = SlidingWindow("w", limit=3, window=60, store=MemoryHits(), clock=clock)
    for _ in range(3):
        assert await window.take("k") == 0
        clock.now += 10
    assert await window.take("k") == 30  # the first hit (t=1000) leaves at 1060; now is 1030
    assert await window.take("other") == 0, "per key"
    clock.now += 30
    assert await window.take("k") == 0, "the oldest hit has left the window"


async def test_weighted_hits_count_their_cost() -> None:
    clock = Clock()
    window = SlidingWindow("bytes", limit=100, window=60, store=MemoryHits(), clock=clock)
    assert await window.take("u", 70) == 0
    clock.now += 5
    assert await window.take("u", 40) == 55
    assert await window.take("u", 30) == 0


async def test_sign_ins_per_account_and_per_client() -> None:
    clock = Clock()
    login = limits(clock).login
    for n in range(3):
        assert await login.attempt("carol", f"10.0.0.{n}") == 0
    assert await login.attempt("carol", "10.0.0.9") > 0, "the account is throttled from any address"
    for n in range(5):
        assert await login.attempt(f"user{n}", "10.9.9.9") == 0
    assert await login.attempt("bob", "10.9.9.9") > 0, "the address is throttled for any account"
    assert await login.attempt("bob", "10.9.9.8") == 0
    clock.now += 61
    assert await login.attempt("carol", "10.0.0.1") == 0, "nobody is locked out beyond the window"


async def test_a_successful_sign_in_clears_the_accounts_failures() -> None:
    clock = Clock()
    login = limits(clock).login
    for _ in range(2):
        assert await login.attempt("carol", "10.0.0.1") == 0
    assert await login.attempt("carol", "10.0.0.1") == 0
    await login.succeeded("carol", "10.0.0.1")
    for _ in range(3):
        assert await login.attempt("carol", "10.0.0.1") == 0


async def test_a_throttled_attempt_is_not_counted_against_the_client() -> None:
    clock = Clock()
    login = limits(clock).login
    for _ in range(3):
        assert await login.attempt("carol", "10.0.0.1") == 0
    for _ in range(10):  # refused by the account's limit: the address keeps its own budget
        assert await login.attempt("carol", "10.0.0.1") > 0
    assert await login.attempt("dave", "10.0.0.1") == 0


async def test_parallel_attempts_are_counted_before_they_are_checked() -> None:
    login = limits(Clock()).login
    waits = await asyncio.gather(*(login.attempt("dave", f"10.1.0.{n}") for n in range(10)))
    assert sum(1 for w in waits if w == 0) == 3


async def test_upload_quota_counts_files_and_bytes() -> None:
    clock = Clock()
    quota = limits(clock, uploads_per_window=3, upload_bytes_per_window=1000, upload_window=60).uploads
    assert quota.max_file_bytes == 1000, "one file never exceeds the per-window bytes"
    assert await quota.take("erin", 600) == 0
    assert await quota.take("erin", 600) > 0, "bytes"
    assert await quota.take("erin", 100) == 0
    assert await quota.take("erin", 100) == 0
    assert await quota.take("erin", 1) > 0, "files"
    assert await quota.take("frank", 900) == 0, "per user"


def test_concurrency_cap_per_key() -> None:
    cap = ConcurrencyCap(2)
    with cap.slot("erin") as first, cap.slot("erin") as second, cap.slot("erin") as third:
        assert (first, second, third) == (True, True, False)
        with cap.slot("bob") as other:
            assert other
    with cap.slot("erin") as again:
        assert again, "slots are given back, refused ones were never taken"


def test_client_address_trusts_only_the_configured_proxies() -> None:
    direct = limits(Clock())
    assert direct.client_address("10.0.0.1", "1.2.3.4") == "10.0.0.1", "no proxy trusted: the peer"
    behind_lb = limits(Clock(), trusted_proxy_hops=1)
    assert behind_lb.client_address("10.0.0.1", "6.6.6.6, 1.2.3.4") == "1.2.3.4", "what the LB appended"
    assert behind_lb.client_address("10.0.0.1", None) == "10.0.0.1"


def test_memory_store_forgets_the_least_recent_keys_beyond_its_size() -> None:
    async def fill() -> MemoryHits:
        store = MemoryHits(max_keys=3)
        for key in "abcd":
            await store.take(key, 0, 1, 1, 60)
        return store

    store = asyncio.run(fill())
    assert list(store._hits) == ["b", "c", "d"]


def test_wait_text_rounds_up() -> None:
    assert wait_text(0.2) == "1 s" and wait_text(41.1) == "42 s"
