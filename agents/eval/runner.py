"""Runs labelled items through `Router.decide` for each prompt variant and records every decision."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

import agents.specialists
from agents.eval.dataset import Item, messages_for
from agents.specialists.base import FileRef, SpecialistSpec
from agents.specialists.registry import all_specs
from agents.supervisor.decision import Router
from agents.supervisor.router import Cascade, Facts, Routed, by_command, by_phrase, turn_facts
from agents.supervisor.state import Task
from core.models import ModelClient
from core.settings import Settings

DEFAULT_VARIANT = "default"


def offered_specs(configured: Sequence[SpecialistSpec] = ()) -> tuple[list[SpecialistSpec], list[str]]:
    """Every specialist, as if all were available: the registry's, then those made at startup from the
    settings (`configured`: the MCP servers'), then packages not yet listed in the registry.

    Returns the specs and the names that came from a package rather than the registry.
    """
    specs = list(all_specs())
    specs += [spec for spec in configured if spec.name not in {s.name for s in specs}]
    known = {spec.name for spec in specs}
    extra: list[str] = []
    for module in sorted(pkgutil.iter_modules(agents.specialists.__path__), key=lambda m: m.name):
        if not module.ispkg or module.name in known:
            continue
        spec = getattr(importlib.import_module(f"agents.specialists.{module.name}"), "SPEC", None)
        if isinstance(spec, SpecialistSpec) and spec.name not in known:
            specs.append(spec)
            known.add(spec.name)
            extra.append(spec.name)
    return specs, extra


@dataclass(frozen=True)
class Variant:
    """A named set of per-model prompt overrides ({model glob: {prompt name: text}}) to evaluate."""

    name: str
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str | None = None

    def settings(self, base: Settings) -> Settings:
        """`base` with this variant's overrides taking precedence over the configured ones."""
        merged: dict[str, dict[str, str]] = {glob: dict(texts) for glob, texts in self.prompts.items()}
        for glob, texts in base.prompts.items():
            merged[glob] = {**texts, **merged.get(glob, {})}
        return base.model_copy(update={"prompts": merged})


def parse_variant(text: str) -> Variant:
    """`NAME` (the configured prompts) or `NAME=PATH` (a YAML file of overrides).

    The file holds {model glob: {prompt name: text}} like ENSEMBLE_PROMPTS, or just
    {prompt name: text}, which applies to every model.
    """
    name, sep, path = text.partition("=")
    name = name.strip()
    if not name:
        raise ValueError(f"variant {text!r} has no name")
    if not sep:
        return Variant(name)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not data:
        raise ValueError(f"variant file {path} must be a mapping of prompt overrides")
    if all(isinstance(v, str) for v in data.values()):
        data = {"*": data}
    prompts: dict[str, dict[str, str]] = {}
    for glob, texts in data.items():
        if not isinstance(texts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items()):
            raise ValueError(f"variant file {path}: {glob!r} must map prompt names to texts")
        prompts[str(glob)] = dict(texts)
    return Variant(name, prompts, source=path)


@dataclass(frozen=True)
class Outcome:
    """One routing decision on one item."""

    id: str
    category: str
    expected: list[str]
    chosen: list[str]
    correct: bool
    attempts: int
    fell_back: bool
    error: str | None
    seconds: float
    requests: list[str]
    invalid: list[str] = field(default_factory=list)  # why rejected attempts were rejected (router's log)
    stage: str | None = None  # which stage of the cascade decided (facts, fast, model), where one ran
    confidence: float | None = None  # the fast stage's confidence in its best label, where it ran
    fast_seconds: float | None = None  # time of the facts and fast stages (no model call in it)
    fast_cpu_seconds: float | None = None  # the process's CPU time in them (the machine's load aside)

    @property
    def valid_first(self) -> bool:
        """Parseable and schema-valid on the first attempt."""
        return self.error is None and self.attempts == 1 and not self.fell_back

    @property
    def hops(self) -> int:
        return len(self.chosen)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid_first": self.valid_first, "hops": self.hops}


Progress = Callable[[str, Outcome], None]


class _Rejections(logging.Handler):
    """Collects the router's warnings about decisions it rejected (one run at a time)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())


async def decide_one(
    router: Router,
    item: Item,
    specs: Sequence[SpecialistSpec],
    refs: dict[str, FileRef],
    settings: Settings,
    per_decision: float | None,
) -> Outcome:
    """The router's decision on `item`; a failing or slow model server is recorded, not raised."""
    history = messages_for(item, refs, settings.history_messages)
    rejected = _Rejections()
    router_log = logging.getLogger(Router.__module__)
    router_log.addHandler(rejected)
    started = time.perf_counter()
    try:
        decision = await asyncio.wait_for(router.decide(history, specs, item.text), per_decision)
    except Exception as exc:
        seconds = time.perf_counter() - started
        error = f"{type(exc).__name__}: {exc}"[:300]
        expected = sorted(item.expect)
        return Outcome(item.id, item.category, expected, [], False, 0, False, error, seconds, [], rejected.reasons)
    finally:
        router_log.removeHandler(rejected)
    seconds = time.perf_counter() - started
    chosen = sorted({task.specialist for task in decision.tasks})
    correct = not decision.fell_back and item.accepts(frozenset(chosen))
    return Outcome(
        item.id,
        item.category,
        sorted(item.expect),
        chosen,
        correct,
        decision.attempts,
        decision.fell_back,
        None,
        seconds,
        [task.request for task in decision.tasks],
        rejected.reasons,
    )


async def run_variant(
    client: ModelClient,
    settings: Settings,
    variant: Variant,
    items: Sequence[Item],
    specs: Sequence[SpecialistSpec],
    refs: dict[str, FileRef],
    *,
    per_decision: float | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Every item through the real `Router.decide`, one at a time (latency is per decision)."""
    names = {spec.name for spec in specs}
    unknown = sorted({n for item in items for n in item.specialists()} - names)
    if unknown:
        raise ValueError(f"the set expects specialists that are not offered: {', '.join(unknown)}")
    variant_settings = variant.settings(settings)
    router = Router(client, variant_settings)
    return await _each(
        items,
        lambda item: decide_one(router, item, specs, refs, variant_settings, per_decision),
        variant.name,
        progress,
    )


def item_facts(item: Item, specs: Sequence[SpecialistSpec], refs: dict[str, FileRef]) -> Facts:
    """The facts of an item's turn: its attachments; the user is taken to have documents in scope (the
    set is about requests, not libraries; tables likewise), and an image applies when one is attached."""
    files = [refs[name] for name in item.files]
    return turn_facts(
        specs, new_files=files, recent_image=any(f.kind == "image" for f in files), documents=True, tables=True
    )


async def route_one(
    cascade: Cascade,
    item: Item,
    specs: Sequence[SpecialistSpec],
    refs: dict[str, FileRef],
    settings: Settings,
    per_decision: float | None,
) -> Outcome:
    """The cascade's decision on `item`, as the graph makes it; a failing model server is recorded."""
    history = messages_for(item, refs, settings.history_messages)
    facts = item_facts(item, specs, refs)
    rejected = _Rejections()
    router_log = logging.getLogger(Router.__module__)
    router_log.addHandler(rejected)
    started = time.perf_counter()
    cpu_started = time.process_time()
    fast_seconds: float | None = None
    fast_cpu: float | None = None
    confidence: float | None = None
    try:
        command = by_command(specs, item.text)
        phrase = None if command is not None else by_phrase(facts.offered, item.text)
        routed: Routed | None
        scores = None
        if command is not None:
            routed = Routed((Task(command[0].name, command[1], "command"),), "command", 0.0, 1.0)
        elif phrase is not None:
            routed = Routed((Task(phrase.name, item.text, "phrase"),), "phrase", 0.0, 1.0)
        else:
            routed, scores = await cascade.quick(item.text, facts)
        fast_seconds = time.perf_counter() - started
        fast_cpu = time.process_time() - cpu_started
        if scores is not None:
            confidence = scores.best[1]
        if routed is None:
            routed = await asyncio.wait_for(cascade.by_model(history, facts, item.text), per_decision)
    except Exception as exc:
        seconds = time.perf_counter() - started
        error = f"{type(exc).__name__}: {exc}"[:300]
        return Outcome(
            item.id,
            item.category,
            sorted(item.expect),
            [],
            False,
            0,
            False,
            error,
            seconds,
            [],
            rejected.reasons,
            "model",
            confidence,
            fast_seconds,
            fast_cpu,
        )
    finally:
        router_log.removeHandler(rejected)
    seconds = time.perf_counter() - started
    chosen = sorted(set(routed.specialists))
    correct = not routed.fell_back and item.accepts(frozenset(chosen))
    return Outcome(
        item.id,
        item.category,
        sorted(item.expect),
        chosen,
        correct,
        routed.attempts,
        routed.fell_back,
        None,
        seconds,
        [task.request for task in routed.tasks],
        rejected.reasons,
        routed.chosen_by,
        routed.confidence if routed.confidence is not None else confidence,
        fast_seconds,
        fast_cpu,
    )


async def run_cascade(
    cascade: Cascade,
    settings: Settings,
    name: str,
    items: Sequence[Item],
    specs: Sequence[SpecialistSpec],
    refs: dict[str, FileRef],
    *,
    per_decision: float | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Every item through one router mode, one at a time."""
    return await _each(
        items, lambda item: route_one(cascade, item, specs, refs, settings, per_decision), name, progress
    )


async def _each(
    items: Sequence[Item], decide: Callable[[Item], Awaitable[Outcome]], name: str, progress: Progress | None
) -> list[Outcome]:
    """`decide` each item in turn (one at a time, so latency is per decision), reporting each outcome."""
    outcomes: list[Outcome] = []
    for item in items:
        outcome = await decide(item)
        outcomes.append(outcome)
        if progress is not None:
            progress(name, outcome)
    return outcomes
