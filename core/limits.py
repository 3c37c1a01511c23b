"""Abuse limits as objects built once at startup: sliding windows over a hit store, and per-key caps.

The state lives in a `HitStore`. `MemoryHits` keeps it in this process (per replica); a store shared by
several replicas (Redis sorted sets and one Lua script for `take`) implements the same three methods.
Concurrent turns are counted per replica on purpose: a turn runs in the replica that holds its socket.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from core.settings import LimitSettings

Clock = Callable[[], float]


class HitStore(Protocol):
    """Timestamped, weighted hits per key."""

    async def take(self, key: str, now: float, cost: float, limit: float, window: float) -> float:
        """Record a hit of `cost` if the hits of the last `window` seconds plus it stay within `limit`
        and return 0; else record nothing and return the seconds until it would fit."""
        ...

    async def drop_latest(self, key: str) -> None:
        """Forget the newest hit of `key` (an attempt that turned out fine)."""
        ...

    async def clear(self, key: str) -> None:
        """Forget every hit of `key`."""
        ...


class MemoryHits:
    """Hits in this process. At most `max_keys` keys are kept (the least recently used go first)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._hits: OrderedDict[str, deque[tuple[float, float]]] = OrderedDict()
        self._max_keys = max_keys

    async def take(self, key: str, now: float, cost: float, limit: float, window: float) -> float:
        # No await in here: in asyncio the check and the record happen as one step.
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            while len(self._hits) > self._max_keys:
                self._hits.popitem(last=False)
        self._hits.move_to_end(key)
        while hits and hits[0][0] <= now - window:
            hits.popleft()
        used = sum(c for _, c in hits)
        if used + cost <= limit:
            hits.append((now, cost))
            return 0.0
        excess = used + cost - limit
        for at, c in hits:
            excess -= c
            if excess <= 0:
                return at + window - now
        return window  # `cost` alone is over the limit: it never fits (callers refuse such sizes first)

    async def drop_latest(self, key: str) -> None:
        hits = self._hits.get(key)
        if hits:
            hits.pop()

    async def clear(self, key: str) -> None:
        self._hits.pop(key, None)


@dataclass(frozen=True)
class SlidingWindow:
    """At most `limit` (a count, or bytes) per key over the last `window` seconds."""

    name: str
    limit: float
    window: float
    store: HitStore
    clock: Clock = time.time  # wall time, so that replicas sharing a store agree

    async def take(self, key: str, cost: float = 1.0) -> float:
        """0 and the hit recorded, or the seconds to wait (nothing recorded)."""
        return await self.store.take(f"{self.name}:{key}", self.clock(), cost, self.limit, self.window)

    async def drop_latest(self, key: str) -> None:
        await self.store.drop_latest(f"{self.name}:{key}")

    async def clear(self, key: str) -> None:
        await self.store.clear(f"{self.name}:{key}")


async def take_both(
    first: SlidingWindow, first_key: str, second: SlidingWindow, second_key: str, second_cost: float = 1.0
) -> float:
    """Take one hit from `first`, then `second_cost` from `second`; 0 when both allow it (both counted),
    else the seconds to wait (and `first`'s hit is given back when `second` refuses)."""
    wait = await first.take(first_key)
    if wait:
        return wait
    wait = await second.take(second_key, second_cost)
    if wait:
        await first.drop_latest(first_key)
    return wait


def wait_text(seconds: float) -> str:
    """`42 s`: a wait, rounded up to whole seconds (never 0)."""
    return f"{max(1, math.ceil(seconds))} s"


@dataclass(frozen=True)
class LoginThrottle:
    """Sign-in attempts per account and per client address.

    Every attempt counts when it starts (so parallel guesses cannot slip through before the first
    failure is recorded); a successful sign-in forgets the account's failures and its own attempt.
    The wait is bounded by the window: nobody is locked out for longer than that after the last failure.
    """

    per_account: SlidingWindow
    per_client: SlidingWindow

    async def attempt(self, account: str, client: str) -> float:
        """0 if this attempt may go ahead (it is counted), else the seconds to wait."""
        return await take_both(self.per_client, client, self.per_account, account)

    async def succeeded(self, account: str, client: str) -> None:
        await self.per_account.clear(account)
        await self.per_client.drop_latest(client)


@dataclass(frozen=True)
class UploadQuota:
    """Files and bytes each user may upload per window, and the size of one file."""

    files: SlidingWindow
    bytes: SlidingWindow
    max_file_bytes: int

    async def take(self, user: str, size: int) -> float:
        """0 if `user` may upload `size` more bytes now (counted), else the seconds to wait."""
        return await take_both(self.files, user, self.bytes, user, float(size))


@dataclass
class ConcurrencyCap:
    """At most `limit` things running at once per key (in this process)."""

    limit: int
    _running: dict[str, int] = field(default_factory=dict)

    def try_acquire(self, key: str) -> bool:
        if self._running.get(key, 0) >= self.limit:
            return False
        self._running[key] = self._running.get(key, 0) + 1
        return True

    def release(self, key: str) -> None:
        left = self._running.get(key, 0) - 1
        if left > 0:
            self._running[key] = left
        else:
            self._running.pop(key, None)

    @contextmanager
    def slot(self, key: str) -> Iterator[bool]:
        """Yields whether a slot was free; a granted slot is released on exit."""
        granted = self.try_acquire(key)
        try:
            yield granted
        finally:
            if granted:
                self.release(key)


@dataclass(frozen=True)
class Limits:
    """Every abuse limit of the app, built from settings at startup."""

    login: LoginThrottle
    uploads: UploadQuota
    turns: ConcurrencyCap
    trusted_proxy_hops: int

    @classmethod
    def from_settings(
        cls, settings: LimitSettings, max_file_bytes: int, store: HitStore | None = None, clock: Clock = time.time
    ) -> Limits:
        hits = store or MemoryHits()
        return cls(
            login=LoginThrottle(
                SlidingWindow("login-account", settings.login_failures_per_account, settings.login_window, hits, clock),
                SlidingWindow("login-client", settings.login_failures_per_client, settings.login_window, hits, clock),
            ),
            uploads=UploadQuota(
                SlidingWindow("upload-files", settings.uploads_per_window, settings.upload_window, hits, clock),
                SlidingWindow("upload-bytes", settings.upload_bytes_per_window, settings.upload_window, hits, clock),
                max_file_bytes=min(max_file_bytes, settings.upload_bytes_per_window),
            ),
            turns=ConcurrencyCap(settings.turns_per_user),
            trusted_proxy_hops=settings.trusted_proxy_hops,
        )

    def client_address(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the TCP peer, or the entry the `trusted_proxy_hops`-th proxy appended."""
        if self.trusted_proxy_hops and forwarded_for:
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            if len(hops) >= self.trusted_proxy_hops:
                return hops[-self.trusted_proxy_hops]
        return peer or "unknown"
