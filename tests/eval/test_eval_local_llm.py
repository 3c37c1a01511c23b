"""`ensemble-eval`'s harness against the real embedded model: llama.cpp serving SmolLM2-135M.

One request per category goes through the real `Router.decide` with grammar-constrained JSON
(`json_object` with the decision schema), greedily (temperature 0) so that the run repeats. A 135M
model routes poorly, so accuracy is reported, not asserted; what must hold is the report's structure
and that every decision was schema-valid on its first attempt.

The items are named, not sampled: on some requests (e.g. vision-02, image-02, multi-01) SmolLM2 writes
a `request` string that runs on for thousands of tokens or contains raw newlines, which the router
rejects; those are supervisor issues that the full `ensemble-eval` run measures (see README,
"Evaluating models"), not properties of the harness.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.eval.dataset import load_dataset
from agents.eval.harness import evaluate
from agents.eval.report import INVALID, render, write_chart, write_json
from agents.eval.runner import Outcome, Variant, offered_specs
from core.models import ModelClient, ModelClients, chat_model
from core.settings import LocalLLMSettings, Settings

pytestmark = [pytest.mark.llm, pytest.mark.timeout(600)]

ITEMS = [
    "answer-02", "search-02", "vision-01", "image-01", "code-01", "documents-01", "memory-01", "multi-02"
]  # fmt: skip
METRICS = {"n", "accuracy", "valid_rate", "retried", "fell_back", "errors", "hops_mean", "latency_mean"}


def _show(variant: str, outcome: Outcome) -> None:
    print(
        f"{outcome.id}: {outcome.chosen} attempts={outcome.attempts} {outcome.seconds:.1f} s",
        outcome.error or "",
    )


def greedy_supervisor(settings: Settings) -> ModelClient:
    """The embedded supervisor as configured, at temperature 0 so that the run is repeatable."""
    client = ModelClients.from_settings(settings).supervisor
    assert client is not None and client.endpoint.structured_output == "json_object"
    endpoint = client.endpoint.model_copy(update={"temperature": 0.0})
    return ModelClient("supervisor", endpoint, chat_model(endpoint))


async def test_local_model_decisions_are_all_schema_valid(
    local_llm: LocalLLMSettings, tmp_path: Path, artifacts_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path, local_llm=local_llm, _env_file=None)  # type: ignore[call-arg]
    by_id = {item.id: item for item in load_dataset()}
    items = [by_id[i] for i in ITEMS]
    specs, _ = offered_specs()
    names = {spec.name for spec in specs}
    client = greedy_supervisor(settings)
    report = await evaluate(
        client, settings, items, [Variant("default")], specs, per_decision=60, progress=_show
    )

    meta = report["meta"]
    assert meta["items"] == len(ITEMS) and meta["structured_output"] == "json_object"
    assert meta["base_url"] == local_llm.base_url
    result = report["variants"]["default"]
    summary = result["summary"]
    assert set(summary) == {"overall", "by_category", "by_specialist", "confusion", "by_tag", "router"}
    assert summary["router"] is None, "the model's decision alone: no cascade stages"
    assert set(summary["by_category"]) == {item.category for item in items}
    assert set(summary["overall"]) >= METRICS
    assert set(summary["confusion"]) == {"answer", *names}

    outcomes = result["items"]
    assert [o["id"] for o in outcomes] == [item.id for item in items]
    for o in outcomes:
        assert o["error"] is None, o
        assert o["valid_first"] and o["attempts"] == 1 and not o["fell_back"], o
        assert set(o["chosen"]) <= names and o["hops"] <= settings.max_specialists_per_turn
        assert o["seconds"] > 0
    overall = summary["overall"]
    assert overall["valid_rate"] == 1.0 and overall["fell_back"] == 0 and overall["errors"] == 0
    assert 0.0 <= overall["accuracy"] <= 1.0
    assert sum(counts[INVALID] for counts in summary["confusion"].values()) == 0

    write_json(report, artifacts_dir / "eval-routing-local.json")
    write_chart(report, artifacts_dir / "eval-routing-local.png")
    table = render(report)
    assert "smollm2" in table and "confusion" in table
    print(table)  # the numbers, in the test log (-s)
