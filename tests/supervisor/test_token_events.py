"""A model's tokens cross the event pipeline coalesced: the first at once, then ~one event per window."""

from __future__ import annotations

import asyncio

from agents.supervisor.events import AnswerToken, StepToken
from agents.supervisor.graph import TokenEvents


async def test_tokens_are_coalesced_without_delaying_the_first_or_losing_any() -> None:
    events: list[object] = []
    handler = TokenEvents(events.append, window=0.05)
    handler.on_llm_new_token("Hel")
    assert events == [AnswerToken("Hel")], "the first token must go at once"
    for token in ("lo", ", ", "wor", "ld"):
        handler.on_llm_new_token(token)
    assert len(events) == 1, "tokens within the window wait for the next event"
    await asyncio.sleep(0.08)  # the model pauses: the timer sends what waits
    assert events[-1] == AnswerToken("lo, world")
    handler.on_llm_new_token("!")
    handler.on_llm_new_token("?")
    handler.on_llm_end(None)
    assert "".join(e.text for e in events if isinstance(e, AnswerToken)) == "Hello, world!?"


async def test_a_steps_tokens_stay_in_that_step() -> None:
    events: list[object] = []
    handler = TokenEvents(events.append, step_id="code-0", window=10.0)
    handler.on_llm_new_token("def")
    handler.on_llm_new_token(" f():")
    handler.on_llm_error(RuntimeError("server gone"))
    assert events == [StepToken("code-0", "def"), StepToken("code-0", " f():")]
