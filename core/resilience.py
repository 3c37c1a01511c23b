"""A circuit breaker per model endpoint, so that a dead server is not hammered.

It rides on LangChain's callbacks: every chat call of a client built by `core.models` reports its
outcome here, and a call started while the circuit is open fails at once with a readable message.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import httpx
import openai
from langchain_core.callbacks import BaseCallbackHandler

from core.errors import EnsembleError


def counts_as_outage(error: BaseException) -> bool:
    """Failures that say the server is unwell (not the request): unreachable, timeouts, 5xx."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500
    return isinstance(error, openai.APIConnectionError | httpx.TransportError | TimeoutError)


class CircuitOpen(EnsembleError):
    """Calls to an endpoint are paused after repeated failures."""


class CircuitBreaker(BaseCallbackHandler):
    """Opens after `threshold` consecutive outages; lets one trial call through after `cooldown` seconds.

    A synchronous handler run inline: LangChain calls every handler once per streamed token, and an
    async one costs a coroutine each time (~20 % of a stream's CPU, measured); these methods only
    compare numbers.
    """

    raise_error = True  # an open circuit must stop the call, not just log
    run_inline = True  # called on the event loop's thread, never in an executor

    def __init__(self, what: str, *, threshold: int = 3, cooldown: float = 15.0) -> None:
        self.what = what
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.cooldown else "half-open"

    def check(self) -> None:
        """Raise `CircuitOpen` while calls are paused."""
        if self.state == "open":
            assert self.opened_at is not None
            wait = self.cooldown - (time.monotonic() - self.opened_at)
            raise CircuitOpen(
                f"{self.what} failed {self.failures} times in a row; Ensemble paused calls to it "
                f"for {wait:.0f} s more. Try again shortly."
            )

    def record(self, error: BaseException | None, *, outage: bool | None = None) -> None:
        """A call's outcome: `error` None is a success; `outage` overrides whether an error counts."""
        if error is None:
            self.failures, self.opened_at = 0, None
        elif counts_as_outage(error) if outage is None else outage:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = time.monotonic()

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.check()

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.record(None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.record(error)
