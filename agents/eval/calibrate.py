"""Fit and check the fast classifier's settings on a held-out split of an evaluation set (no model calls).

    python -m agents.eval.calibrate [--dataset agents/eval/sets/router.yaml] [--check agents/eval/sets/routing.yaml]

The set is split in two halves, stratified by category and fixed by a hash of each item's id. On one
half (calibration) the softmax temperature is fitted by log-loss, and the direct-answer bias, the
attachment boost and the second-specialist level by accuracy; the other half (held out) is scored with
them, and the halves are then swapped (2-fold). Also printed: the reliability of the confidence on the
held-out half (accuracy per confidence bin), leave-one-out accuracy on the exemplars themselves (how
they classify each other, against how the evaluation set fares: the gap of phrasing), and the score of
each `--check` set (written by others) with the fitted settings. The exemplars are never fitted to.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.eval.dataset import ROUTER_DATASET, Item, load_dataset
from agents.eval.runner import offered_specs
from agents.specialists.base import FileRef
from agents.supervisor.classifier import DIRECT, FastClassifier, combine, exemplar_sets, scores_from, split_clauses
from agents.supervisor.router import turn_facts
from core.settings import RouterSettings, Settings

TEMPERATURES = (0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07, 0.1)
BIASES = (-0.02, 0.0, 0.01, 0.02, 0.03, 0.04, 0.06)
BOOSTS = (0.1, 0.2, 0.3, 0.4)
SECONDS = (0.3, 0.35, 0.4, 0.5, 1.0)
CLAUSES = (0.5, 0.6, 0.7, 0.8, 1.0)


@dataclass(frozen=True)
class Case:
    """An item as the fast stage sees it: per-label similarities, what is offered, what is attached."""

    item: Item
    sims: dict[str, float]
    allowed: tuple[str, ...]
    candidates: tuple[str, ...]
    parts: tuple[dict[str, float], ...] = ()  # per clause of a request in several parts


def split(items: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """Two halves, stratified by category: within each, items alternate by the order of their hash."""
    a: list[Item] = []
    b: list[Item] = []
    for category in sorted({i.category for i in items}):
        group = sorted(
            (i for i in items if i.category == category), key=lambda i: hashlib.sha256(i.id.encode()).digest()
        )
        for n, item in enumerate(group):
            (a if n % 2 == 0 else b).append(item)
    return a, b


def predict(case: Case, settings: RouterSettings, limit: int = 3) -> tuple[list[str], float, float]:
    """(chosen specialists, confidence, probability of a right single label) of one case."""
    boosts = dict.fromkeys(case.candidates, settings.attachment_boost)
    scores = scores_from(case.sims, case.allowed, boosts, settings)
    parts = [scores_from(sims, case.allowed, boosts, settings) for sims in case.parts]
    chosen, confidence = combine(scores, parts, settings, limit)
    truth = sorted(case.item.expect)[0] if len(case.item.expect) == 1 else (DIRECT if not case.item.expect else None)
    p_true = scores.of(truth) if truth else scores.best[1]
    return chosen, confidence, p_true


def accuracy(cases: Sequence[Case], settings: RouterSettings) -> float:
    if not cases:
        return float("nan")
    return sum(c.item.accepts(frozenset(predict(c, settings)[0])) for c in cases) / len(cases)


def log_loss(cases: Sequence[Case], settings: RouterSettings) -> float:
    single = [c for c in cases if len(c.item.expect) <= 1]
    return -sum(math.log(max(predict(c, settings)[2], 1e-9)) for c in single) / max(1, len(single))


def fit(cases: Sequence[Case], base: RouterSettings) -> RouterSettings:
    """Bias, boost and second level by accuracy (ties: the smaller change), then temperature by log-loss."""
    best: tuple[float, RouterSettings] | None = None
    for bias, boost, second, clause in itertools.product(BIASES, BOOSTS, SECONDS, CLAUSES):
        update = {"direct_bias": bias, "attachment_boost": boost, "second_at": second, "clause_at": clause}
        candidate = base.model_copy(update=update)
        score = accuracy(cases, candidate)
        if best is None or score > best[0] + 1e-9:
            best = (score, candidate)
    assert best is not None
    chosen = best[1]
    temperature = min(TEMPERATURES, key=lambda t: log_loss(cases, chosen.model_copy(update={"temperature": t})))
    return chosen.model_copy(update={"temperature": temperature})


def reliability(cases: Sequence[Case], settings: RouterSettings) -> list[tuple[str, int, float, float]]:
    """(bin, n, mean confidence, accuracy) per confidence bin."""
    edges = (0.0, 0.4, 0.6, 0.8, 0.9, 1.01)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = [c for c in cases if low <= predict(c, settings)[1] < high]
        if inside:
            conf = sum(predict(c, settings)[1] for c in inside) / len(inside)
            rows.append((f"{low:.1f}-{min(high, 1.0):.1f}", len(inside), conf, accuracy(inside, settings)))
    return rows


async def cases_for(items: Sequence[Item], classifier: FastClassifier, embedder: Any, specs: Any) -> list[Case]:
    vectors = await embedder.embed([item.text for item in items])
    out = []
    for item, vector in zip(items, vectors, strict=True):
        files = [
            FileRef(
                name,
                name,
                name,
                "image/png" if name.lower().endswith((".png", ".jpg", ".jpeg")) else "x",
                1,
                "image" if name.lower().endswith((".png", ".jpg", ".jpeg")) else "document",
            )
            for name in item.files
        ]
        facts = turn_facts(
            specs, new_files=files, recent_image=any(f.kind == "image" for f in files), documents=True, tables=True
        )
        clauses = split_clauses(item.text)
        parts = tuple(classifier.similarities(v) for v in await embedder.embed(clauses)) if clauses else ()
        out.append(Case(item, classifier.similarities(vector), facts.names, facts.candidates, parts))
    return out


def exemplar_loo(classifier_sets: dict[str, list[str]], vectors: list[list[float]], settings: RouterSettings) -> float:
    """Leave-one-out accuracy of the exemplars classifying each other (single label, all offered)."""
    import numpy as np

    labels = list(classifier_sets)
    owners = np.asarray([i for i, label in enumerate(labels) for _ in classifier_sets[label]])
    matrix = np.asarray(vectors, dtype=np.float32)
    sims = matrix @ matrix.T
    np.fill_diagonal(sims, -np.inf)
    right = 0
    m = settings.neighbours
    for row in range(len(matrix)):
        per_label = {}
        for i, label in enumerate(labels):
            values = sims[row, owners == i]
            values = values[np.isfinite(values)]
            per_label[label] = float(np.sort(values)[-m:].mean())
        scores = scores_from(per_label, labels, None, settings)
        right += scores.best[0] == labels[owners[row]]
    return right / len(matrix)


async def main_async(args: argparse.Namespace) -> int:
    import httpx

    from rag.embeddings import build_embedder

    settings = Settings()
    specs, _ = offered_specs()
    async with httpx.AsyncClient() as http:
        embedder = await build_embedder(settings.embeddings, http, settings.model_cache)
        try:
            sets = exemplar_sets(specs)
            classifier = await FastClassifier.build(embedder, sets, settings.router, settings.model_cache)
            items = load_dataset(args.dataset)
            cases = {c.item.id: c for c in await cases_for(items, classifier, embedder, specs)}
            a, b = split(items)
            halves = ([cases[i.id] for i in a], [cases[i.id] for i in b])
            base = settings.router
            print(f"set: {args.dataset} ({len(items)} items; halves {len(a)} + {len(b)})")
            print(f"configured settings: {base.model_dump()}")
            print(
                f"  accuracy, configured settings: all {accuracy(list(cases.values()), base):.3f}, "
                f"half A {accuracy(halves[0], base):.3f}, half B {accuracy(halves[1], base):.3f}"
            )
            folds = []
            for name, (train, test) in (("A->B", halves), ("B->A", halves[::-1])):
                fitted = fit(train, base)
                folds.append(accuracy(test, fitted))
                print(
                    f"fold {name}: fitted temperature={fitted.temperature} direct_bias={fitted.direct_bias} "
                    f"attachment_boost={fitted.attachment_boost} second_at={fitted.second_at} "
                    f"clause_at={fitted.clause_at}; "
                    f"calibration half {accuracy(train, fitted):.3f}, held-out half {folds[-1]:.3f}"
                )
            print(f"2-fold held-out accuracy: {sum(folds) / 2:.3f}")
            print("reliability of the configured confidence on all items (bin, n, mean confidence, accuracy):")
            for row in reliability(list(cases.values()), base):
                print(f"  {row[0]}  n={row[1]:3d}  confidence {row[2]:.2f}  accuracy {row[3]:.2f}")
            vectors = await embedder.embed([t for label in sets for t in sets[label]])
            print(
                f"exemplars, leave-one-out accuracy: {exemplar_loo(sets, vectors, base):.3f} "
                f"({sum(len(v) for v in sets.values())} exemplars)"
            )
            for check in args.check:
                other = load_dataset(check)
                other_cases = await cases_for(other, classifier, embedder, specs)
                print(f"check set {check} ({len(other)} items): accuracy {accuracy(other_cases, base):.3f}")
        finally:
            await embedder.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.eval.calibrate", description=__doc__)
    parser.add_argument("--dataset", type=Path, default=ROUTER_DATASET)
    parser.add_argument("--check", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
