"""The evaluation harness itself, checked with scripted supervisor models (no model server).

These tests check the arithmetic of the report (accuracy, valid rate, fallbacks, hops, confusion)
and what the router is sent; they say nothing about any real model's routing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from langchain_core.messages import AIMessage

from agents.eval.cli import main as eval_main
from agents.eval.dataset import ANSWER, DEFAULT_DATASET, Item, load_dataset, stratified
from agents.eval.harness import evaluate
from agents.eval.report import INVALID, render, write_chart, write_json
from agents.eval.runner import Variant, offered_specs, parse_variant
from core.settings import Settings
from tests.support.scripted import ScriptedChatModel, scripted_client, tool_call

SPECIALISTS = {"search", "vision", "image", "code", "documents", "memory"}


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]


def subset(n: int = 16) -> list[Item]:
    return stratified(load_dataset(), n)


def json_reply(item: Item) -> AIMessage:
    tasks = [{"specialist": name, "request": item.text} for name in sorted(item.expect)]
    return AIMessage(content=json.dumps({"tasks": tasks}))


def test_dataset_is_labelled_for_every_specialist() -> None:
    items = load_dataset()
    specs, _ = offered_specs()
    names = {spec.name for spec in specs}
    assert len(items) >= 120
    assert names >= SPECIALISTS, "every specialist package is offered to the router"
    assert all(item.specialists() <= names for item in items)
    counts = {c: sum(i.category == c for i in items) for c in [ANSWER, *sorted(SPECIALISTS), "multi"]}
    assert min(counts.values()) >= 10, counts
    assert any("ambiguous" in item.tags for item in items)
    assert any(item.history for item in items)
    assert any(f.endswith(".png") for item in items for f in item.files)
    assert "Provenance:" in DEFAULT_DATASET.read_text(encoding="utf-8")


def test_stratified_subset_covers_every_category() -> None:
    items = load_dataset()
    picked = stratified(items, 12)
    assert len(picked) == 12
    assert {i.category for i in picked} == {i.category for i in items}
    assert stratified(items, 12) == picked, "the subset is deterministic"


async def test_scripted_perfect_router_scores_one(tmp_path: Path) -> None:
    items = subset()
    model = ScriptedChatModel(script=[json_reply(item) for item in items])
    specs, _ = offered_specs()
    report = await evaluate(scripted_client(model), settings(tmp_path), items, [Variant("default")], specs)

    summary = report["variants"]["default"]["summary"]
    overall = summary["overall"]
    assert overall["n"] == len(items)
    assert overall["accuracy"] == 1.0 and overall["valid_rate"] == 1.0
    assert overall["fell_back"] == 0 and overall["errors"] == 0 and overall["retried"] == 0
    assert overall["hops_mean"] == pytest.approx(sum(len(i.expect) for i in items) / len(items), abs=1e-3)
    assert all(m["accuracy"] == 1.0 for m in summary["by_category"].values())
    assert all(
        m["recall"] in (1.0, None) and m["precision"] in (1.0, None)
        for m in summary["by_specialist"].values()
    )
    matrix = summary["confusion"]
    off_diagonal = sum(
        count
        for row, counts in matrix.items()
        for column, count in counts.items()
        if row != column and not (row != ANSWER and column != ANSWER)
    )
    assert off_diagonal == 0
    assert sum(counts[INVALID] for counts in matrix.values()) == 0

    # one decision per item, with every specialist offered in the schema, and attachments noted
    assert len(model.calls) == len(items)
    schema = model.call_kwargs[0]["response_format"]["schema"]
    assert set(schema["properties"]["tasks"]["items"]["properties"]["specialist"]["enum"]) >= SPECIALISTS
    for item, call in zip(items, model.calls, strict=True):
        for name in item.files:
            assert f"attached: {name}" in call[-1].text or name in call[-1].text

    write_json(report, tmp_path / "r.json")
    write_chart(report, tmp_path / "r.png")
    assert json.loads((tmp_path / "r.json").read_text())["meta"]["items"] == len(items)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = render(report)
    assert "accuracy" in table and "confusion" in table and "1.00" in table


async def test_scripted_garbage_model_has_no_valid_decisions(tmp_path: Path) -> None:
    items = subset(10)
    model = ScriptedChatModel(
        script=[AIMessage(content="sure! I think search") for _ in range(2 * len(items))]
    )
    specs, _ = offered_specs()
    report = await evaluate(scripted_client(model), settings(tmp_path), items, [Variant("default")], specs)

    overall = report["variants"]["default"]["summary"]["overall"]
    assert overall["valid_rate"] == 0.0
    assert overall["fell_back"] == len(items)
    assert overall["accuracy"] == 0.0, "a fallback is not a correct decision, even for direct-answer items"
    assert len(model.calls) == 2 * len(items), "each invalid decision is retried once"
    matrix = report["variants"]["default"]["summary"]["confusion"]
    assert sum(counts[INVALID] for counts in matrix.values()) >= len(items)
    assert all(
        o["attempts"] == 2 and o["fell_back"] and not o["valid_first"] and len(o["invalid"]) == 2
        for o in report["variants"]["default"]["items"]
    )


async def test_scripted_tool_calls_retries_and_server_errors(tmp_path: Path) -> None:
    by_id = {item.id: item for item in load_dataset()}
    items = [by_id["code-01"], by_id["multi-01"], by_id["answer-03"], by_id["image-01"]]
    model = ScriptedChatModel(
        script=[
            AIMessage(content="", tool_calls=[tool_call("ask_code", request="palindrome")]),
            AIMessage(
                content="",
                tool_calls=[tool_call("ask_search", request="python"), tool_call("ask_code", request="x")],
            ),
            # unknown specialist first, then a direct answer: valid only after a retry
            AIMessage(content="", tool_calls=[tool_call("ask_weather", request="?")]),
            AIMessage(content="Canberra."),
            RuntimeError("connection refused"),
        ]
    )
    specs, _ = offered_specs()
    report = await evaluate(
        scripted_client(model, "tools"), settings(tmp_path), items, [Variant("default")], specs
    )

    outcomes = {o["id"]: o for o in report["variants"]["default"]["items"]}
    assert outcomes["code-01"]["correct"] and outcomes["code-01"]["valid_first"]
    assert outcomes["multi-01"]["chosen"] == ["code", "search"] and outcomes["multi-01"]["hops"] == 2
    assert outcomes["answer-03"]["correct"] and outcomes["answer-03"]["attempts"] == 2
    assert not outcomes["answer-03"]["valid_first"]
    assert "unknown specialist 'weather'" in outcomes["answer-03"]["invalid"][0]
    assert outcomes["image-01"]["error"].startswith("RuntimeError") and not outcomes["image-01"]["correct"]
    overall = report["variants"]["default"]["summary"]["overall"]
    assert (overall["accuracy"], overall["valid_rate"], overall["retried"], overall["errors"]) == (
        0.75,
        0.5,
        1,
        1,
    )
    assert overall["hops_mean"] == pytest.approx(1.0)  # (1 + 2 + 0) / 3 decided items


async def test_scripted_prompt_variants_side_by_side(tmp_path: Path) -> None:
    items = subset(8)
    prompts = tmp_path / "terse.yaml"
    prompts.write_text(
        yaml.safe_dump(
            {"scripted*": {"supervisor.route": "TERSE. Pick from:\n{specialists}\nAt most {max_tasks}."}}
        )
    )
    variants = [parse_variant("default"), parse_variant(f"terse={prompts}")]
    # the default prompt routes everything right, the terse one answers everything directly
    replies = [json_reply(item) for item in items] + [AIMessage(content='{"tasks": []}') for _ in items]
    model = ScriptedChatModel(script=replies)
    specs, _ = offered_specs()
    report = await evaluate(scripted_client(model), settings(tmp_path), items, variants, specs)

    assert list(report["variants"]) == ["default", "terse"]
    systems = [call[0].text for call in model.calls]
    assert not any(s.startswith("TERSE") for s in systems[: len(items)])
    assert all(s.startswith("TERSE") for s in systems[len(items) :])
    default, terse = (report["variants"][v]["summary"]["overall"] for v in ("default", "terse"))
    direct = sum(not item.expect for item in items)
    assert default["accuracy"] == 1.0
    assert terse["accuracy"] == pytest.approx(direct / len(items), abs=1e-3)
    assert "variants side by side" in render(report)


def test_variant_file_of_plain_prompt_names_applies_to_every_model(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("supervisor.route_json: 'JSON please'\n")
    variant = parse_variant(f"plain={path}")
    configured = Settings(_env_file=None, prompts={"*mixtral*": {"supervisor.route_json": "old"}})  # type: ignore[call-arg]
    merged = variant.settings(configured)
    assert merged.prompt("supervisor.route_json", "mixtral-8x7b", "builtin") == "JSON please"
    assert merged.prompt("supervisor.route", "mixtral-8x7b", "builtin") == "builtin"
    with pytest.raises(ValueError):
        parse_variant("=x.yaml")


def test_scripted_cli_reports_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert eval_main(["--dataset", str(tmp_path / "none.yaml")]) == 1
    assert "ensemble-eval:" in capsys.readouterr().err


def test_shipped_prompt_variant_parses() -> None:
    variant = parse_variant(f"small={DEFAULT_DATASET.with_name('prompts-small.yaml')}")
    merged = variant.settings(Settings(_env_file=None))  # type: ignore[call-arg]
    route = merged.prompt("supervisor.route", "smollm2-135m-instruct", "builtin")
    assert route.format(specialists="- code: x", max_tasks=3).startswith("You route")
    assert merged.prompt("supervisor.route", "mixtral", "builtin") == "builtin"


async def test_scripted_cli_renders_a_saved_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = subset(8)
    model = ScriptedChatModel(script=[json_reply(item) for item in items])
    specs, _ = offered_specs()
    report = await evaluate(scripted_client(model), settings(tmp_path), items, [Variant("default")], specs)
    write_json(report, tmp_path / "saved.json")
    chart = tmp_path / "again.png"
    assert eval_main(["--render", str(tmp_path / "saved.json"), "--chart", str(chart)]) == 0
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert "variant default" in capsys.readouterr().out


async def test_scripted_router_modes_side_by_side(tmp_path: Path) -> None:
    """Each router mode on the same items: which stage decided, model calls, the fast stage's time."""
    from agents.eval.dataset import ROUTER_DATASET
    from agents.supervisor.classifier import RecentVectors
    from agents.supervisor.router import FastStage
    from core.local_embeddings import LocalEmbedder
    from core.settings import RouterSettings

    by_id = {item.id: item for item in load_dataset(ROUTER_DATASET)}
    items = [by_id["answer-05"], by_id["code-01"], by_id["vision-01"], by_id["image-01"]]
    base = Settings(data_dir=tmp_path, _env_file=None, router=RouterSettings(threshold=0.0))  # type: ignore[call-arg]
    model = ScriptedChatModel(script=[json_reply(item) for item in items])
    specs, _ = offered_specs()
    embedder = await LocalEmbedder.load()
    fast = FastStage(RecentVectors(embedder), specs, base, tmp_path).start()
    try:
        report = await evaluate(
            scripted_client(model), base, items, [Variant("default")], specs,
            modes=["facts", "fast", "model", "cascade"], fast=fast,
        )
    finally:
        await fast.aclose()
        await embedder.aclose()

    variants = report["variants"]
    assert list(variants) == ["facts", "fast", "model", "cascade"]
    stages = {name: v["summary"]["router"] for name, v in variants.items()}
    assert stages["facts"]["decided_by"]["facts"]["n"] == len(items) and stages["facts"]["model_calls"] == 0
    assert stages["fast"]["decided_by"]["fast"]["n"] == len(items) and stages["fast"]["model_calls"] == 0
    assert stages["fast"]["fast_p50_ms"] is not None and stages["fast"]["fast_cpu_p50_ms"] is not None
    assert stages["model"]["decided_by"]["model"]["n"] == len(items) and stages["model"]["model_calls"] == len(items)
    assert len(model.calls) == len(items), "only the model mode asked the model (threshold 0: cascade never)"
    assert variants["model"]["summary"]["overall"]["accuracy"] == 1.0, "the scripted model is right"
    # facts alone: the image attached to vision-01 makes vision; the rest are answered directly
    facts_items = {o["id"]: o for o in variants["facts"]["items"]}
    assert facts_items["vision-01"]["chosen"] == ["vision"] and facts_items["code-01"]["chosen"] == []
    assert variants["fast"]["summary"]["overall"]["accuracy"] == 1.0
    assert "router modes side by side" in render(report)
    write_chart(report, tmp_path / "modes.png")
    assert (tmp_path / "modes.png").read_bytes()[:4] == b"\x89PNG"
