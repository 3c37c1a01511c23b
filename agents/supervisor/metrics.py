"""Prometheus metrics of chat turns, read off the agent service's turn events by one observer.

`TurnMetrics.observe` wraps a turn's event stream and passes every event through unchanged; nothing in
the graph or the specialists counts anything. The registry is built with the object (at startup),
and the model servers' circuit states are read from the service when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.supervisor.service import (
    AnswerToken,
    StepFinished,
    StepStarted,
    StepToken,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)

CIRCUIT_STATES = ("closed", "half-open", "open")
DIRECT = "direct"  # the routing label of a turn the supervisor answered without a specialist
# Seconds: a first token from a warm model comes in well under a second; a cold GPU start takes minutes.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _CircuitCollector(Collector):
    """`ensemble_model_circuit_state{model, state}`: 1 for each model role's current circuit state."""

    def __init__(self, states: Callable[[], Mapping[str, str]]) -> None:
        self._states = states

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "ensemble_model_circuit_state",
            "Circuit breaker state of each model role's server (1 = the current state)",
            labels=["model", "state"],
        )
        for model, current in sorted(self._states().items()):
            for state in CIRCUIT_STATES:
                family.add_metric([model, state], 1.0 if current == state else 0.0)
        return [family]


class TurnMetrics:
    """Counters and histograms of turns, hand-offs and specialists, in a registry of their own."""

    def __init__(self, circuit_states: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter(
            "ensemble_turns", "Chat turns, by how they ended", ["outcome"], registry=self.registry
        )
        self.routes = Counter(
            "ensemble_routing_decisions",
            f"Hand-offs to a specialist ({DIRECT!r}: answered by the supervisor alone)",
            ["specialist"],
            registry=self.registry,
        )
        self.first_token = Histogram(
            "ensemble_time_to_first_token_seconds",
            "From a turn's start to the first streamed token the user sees (answer or step)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "ensemble_turn_duration_seconds", "Whole turns", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.specialist_seconds = Histogram(
            "ensemble_specialist_duration_seconds",
            "One specialist step, from hand-off to its result",
            ["specialist"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.specialist_errors = Counter(
            "ensemble_specialist_errors", "Specialist steps that ended in an error", ["specialist"],
            registry=self.registry,
        )
        if circuit_states is not None:
            self.registry.register(_CircuitCollector(circuit_states))

    async def observe(self, events: AsyncIterator[TurnEvent]) -> AsyncIterator[TurnEvent]:
        """Yield a turn's events unchanged, recording them; a consumer that stops early is `cancelled`."""
        start = time.monotonic()
        first_token = False
        routed = False
        outcome = "cancelled"
        try:
            async for event in events:
                if isinstance(event, AnswerToken | StepToken):
                    if not first_token:
                        first_token = True
                        self.first_token.observe(time.monotonic() - start)
                elif isinstance(event, StepStarted):
                    routed = True
                    self.routes.labels(event.specialist).inc()
                elif isinstance(event, StepFinished):
                    self.specialist_seconds.labels(event.specialist).observe(event.seconds)
                    if event.error:
                        self.specialist_errors.labels(event.specialist).inc()
                elif isinstance(event, TurnFinished):
                    outcome = "finished"
                elif isinstance(event, TurnFailed):
                    outcome = "failed"
                yield event
        finally:
            if not routed and outcome == "finished":
                self.routes.labels(DIRECT).inc()
            self.turns.labels(outcome).inc()
            self.turn_seconds.observe(time.monotonic() - start)

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
