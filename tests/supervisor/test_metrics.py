"""TurnMetrics reads a turn's typed events and passes them through unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.supervisor.metrics import TurnMetrics
from agents.supervisor.service import (
    AnswerToken,
    StepFinished,
    StepStarted,
    StepToken,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)


async def _stream(events: Sequence[TurnEvent], pause: float = 0.0) -> AsyncIterator[TurnEvent]:
    for event in events:
        await asyncio.sleep(pause)
        yield event


def _samples(metrics: TurnMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_events_pass_through_and_are_counted() -> None:
    states = {"supervisor": "closed", "code": "open"}
    metrics = TurnMetrics(circuit_states=lambda: states)
    turn: list[TurnEvent] = [
        StepStarted("s1", "code", "Code", "write it"),
        StepToken("s1", "def"),
        StepFinished("s1", "code", "def f(): ...", False, 1.5),
        StepStarted("s2", "search", "Search", "find it"),
        StepFinished("s2", "search", "unreachable", True, 0.2),
        AnswerToken("Here"),
        TurnFinished("Here it is"),
    ]
    seen = [event async for event in metrics.observe(_stream(turn, pause=0.01))]
    assert seen == turn
    direct: list[TurnEvent] = [AnswerToken("Hi"), TurnFinished("Hi")]
    assert [e async for e in metrics.observe(_stream(direct))] == direct
    failed: list[TurnEvent] = [TurnFailed("the model server is unreachable")]
    assert [e async for e in metrics.observe(_stream(failed))] == failed

    s = _samples(metrics)
    assert s[("ensemble_turns_total", (("outcome", "finished"),))] == 2
    assert s[("ensemble_turns_total", (("outcome", "failed"),))] == 1
    assert s[("ensemble_routing_decisions_total", (("specialist", "code"),))] == 1
    assert s[("ensemble_routing_decisions_total", (("specialist", "search"),))] == 1
    assert s[("ensemble_routing_decisions_total", (("specialist", "direct"),))] == 1
    assert s[("ensemble_specialist_errors_total", (("specialist", "search"),))] == 1
    assert ("ensemble_specialist_errors_total", (("specialist", "code"),)) not in s
    assert s[("ensemble_specialist_duration_seconds_sum", (("specialist", "code"),))] == pytest.approx(1.5)
    # two turns streamed a token; the first one's came after the first step's pause
    assert s[("ensemble_time_to_first_token_seconds_count", ())] == 2
    assert s[("ensemble_time_to_first_token_seconds_sum", ())] >= 0.01
    assert s[("ensemble_model_circuit_state", (("model", "code"), ("state", "open")))] == 1
    assert s[("ensemble_model_circuit_state", (("model", "code"), ("state", "closed")))] == 0
    assert s[("ensemble_model_circuit_state", (("model", "supervisor"), ("state", "closed")))] == 1
    states["code"] = "closed"  # read at scrape time
    assert _samples(metrics)[("ensemble_model_circuit_state", (("model", "code"), ("state", "closed")))] == 1


async def test_a_turn_stopped_by_the_user_counts_as_cancelled() -> None:
    metrics = TurnMetrics()

    async def endless() -> AsyncIterator[TurnEvent]:
        while True:
            yield AnswerToken("x")
            await asyncio.sleep(0.01)

    async def consume() -> None:
        async for _ in metrics.observe(endless()):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    s = _samples(metrics)
    assert s[("ensemble_turns_total", (("outcome", "cancelled"),))] == 1
    assert ("ensemble_routing_decisions_total", (("specialist", "direct"),)) not in s


def test_each_instance_has_its_own_registry() -> None:
    """No module-level registry: two app instances (or tests) never share counters."""
    a, b = TurnMetrics(), TurnMetrics()
    a.turns.labels("finished").inc()
    assert _samples(b).get(("ensemble_turns_total", (("outcome", "finished"),))) is None
    assert _samples(a)[("ensemble_turns_total", (("outcome", "finished"),))] == 1
