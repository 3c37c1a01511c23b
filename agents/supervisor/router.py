"""The router cascade: facts first, then the fast classifier, then the supervisor model when unsure.

a. Facts: what is attached to this message (an image makes vision a candidate, a document makes
   documents one) and availability: a specialist is offered only when it is configured (the registry
   built it) and what it `needs` holds this turn (an image in this message or the one before; documents
   the user has). Commands and unmistakable phrases are decided in the graph before the cascade runs.
b. The fast classifier (agents/supervisor/classifier.py) over the embedder the app already runs, with
   the attachment candidates boosted, "answer directly" as the safe default and a calibrated confidence.
c. The supervisor model, offered only the specialists that apply, when the classifier's confidence is
   under the threshold (or always, in `model` mode). The user's request is forwarded unchanged unless
   the model rewrites it.

`RouterSettings.mode` picks the stages: `facts`, `fast`, `model` or `cascade` (the default). Each
stage's decision says which stage made it (`chosen_by`), so that `ensemble-eval` can measure each.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import FileKind, FileRef, Need, SpecialistSpec
from agents.supervisor.classifier import FastClassifier, Scores, combine, exemplar_sets, split_clauses
from agents.supervisor.decision import Router
from agents.supervisor.state import ChosenBy, Task
from core.embeddings import Embedder
from core.settings import Settings

log = logging.getLogger(__name__)

# Which need an attachment of a kind fulfils: the specialists with that need become candidates.
ATTACHMENT_NEEDS: dict[FileKind, Need] = {"image": "recent_image", "document": "documents"}


@dataclass(frozen=True)
class Facts:
    """What is known of a turn before anything is classified."""

    offered: tuple[SpecialistSpec, ...]  # available, and what each needs holds
    attached: frozenset[FileKind] = frozenset()  # kinds of file attached to this very message

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.offered)

    @property
    def candidates(self) -> tuple[str, ...]:
        """Offered specialists that read what this message carries (an image: vision; a document: documents)."""
        wanted = {ATTACHMENT_NEEDS[kind] for kind in self.attached if kind in ATTACHMENT_NEEDS}
        found = [
            spec.name
            for spec in self.offered
            if wanted & set(spec.needs) or (spec.uploads is not None and set(spec.uploads.kinds) & self.attached)
        ]
        return tuple(dict.fromkeys(found))


def turn_facts(
    available: Sequence[SpecialistSpec],
    *,
    new_files: Sequence[FileRef] = (),
    recent_image: bool = False,
    documents: bool = False,
    tables: bool = False,
) -> Facts:
    """The facts of a turn: `recent_image` an image came with this message or the one before; `documents`
    the user has documents in scope (an attached document counts); `tables` a table was shared in the chat."""
    kinds = frozenset(f.kind for f in new_files)
    holds: dict[Need, bool] = {
        "recent_image": recent_image or "image" in kinds,
        "documents": documents or "document" in kinds,
        "tables": tables or "table" in kinds,
    }
    offered = tuple(spec for spec in available if all(holds.get(need, False) for need in spec.needs))
    return Facts(offered, kinds)


@dataclass(frozen=True)
class Routed:
    """A routing decision: tasks (none: answer directly), the stage that made it, how sure, how long."""

    tasks: tuple[Task, ...]
    chosen_by: ChosenBy
    seconds: float
    confidence: float | None = None
    answer: AIMessage | None = None  # the model answered itself (tools mode)
    attempts: int = 1
    fell_back: bool = False
    scores: Scores | None = None  # the fast stage's probabilities, where it ran

    @property
    def specialists(self) -> tuple[str, ...]:
        return tuple(task.specialist for task in self.tasks)


def by_command(specs: Sequence[SpecialistSpec], text: str) -> tuple[SpecialistSpec, str] | None:
    """A leading slash command naming one of `specs` (the graph asks the registry, which knows them all)."""
    match = re.match(r"^\s*(/\w+)\b\s*(.*)$", text, re.S)
    if not match:
        return None
    return next(((spec, match.group(2).strip()) for spec in specs if spec.command == match.group(1).lower()), None)


def by_phrase(specs: Sequence[SpecialistSpec], text: str) -> SpecialistSpec | None:
    """The first of `specs` whose unmistakable phrase this message uses ("forget everything")."""
    return next((spec for spec in specs if spec.routes_directly and spec.asks_for.search(text)), None)


class FastStage:
    """The classifier, built in the background from the exemplars of the offered specialists, and the
    embedder that turns each request into a vector (once per turn: memory recall reads the same one)."""

    def __init__(self, embedder: Embedder, specs: Sequence[SpecialistSpec], settings: Settings, cache: Path | None):
        self.embedder = embedder
        self._specs = tuple(specs)
        self._settings = settings
        self._cache = cache
        self._building: asyncio.Task[FastClassifier | None] | None = None

    def start(self) -> FastStage:
        if self._building is None:
            self._building = asyncio.create_task(self._build(), name="router-classifier")
        return self

    async def _build(self) -> FastClassifier | None:
        try:
            sets = await asyncio.to_thread(exemplar_sets, self._specs)
            return await FastClassifier.build(self.embedder, sets, self._settings.router, self._cache)
        except Exception:
            log.exception("router: the fast classifier could not be built; the model decides instead")
            return None

    async def classifier(self) -> FastClassifier | None:
        self.start()
        assert self._building is not None
        return await asyncio.shield(self._building)

    async def aclose(self) -> None:
        if self._building is not None and not self._building.done():
            self._building.cancel()
            await asyncio.gather(self._building, return_exceptions=True)


class Cascade:
    """Runs the stages the settings ask for; `model` is None when no supervisor model is configured."""

    def __init__(self, settings: Settings, model: Router | None, fast: FastStage | None, *, embedded: bool) -> None:
        self._settings = settings
        self._model = model
        self._fast = fast
        self.mode = settings.router.mode
        self.threshold = settings.router.threshold_for(embedded)

    @property
    def has_model(self) -> bool:
        return self._model is not None

    async def quick(self, text: str, facts: Facts) -> tuple[Routed | None, Scores | None]:
        """The decision of the facts and the fast classifier, or None when the model must decide (with
        the classifier's scores, when it ran)."""
        started = time.perf_counter()
        limit = self._settings.max_specialists_per_turn
        if not facts.offered:
            return Routed((), "facts", time.perf_counter() - started, confidence=1.0), None
        mode = self.mode
        if mode == "model" and self._model is not None:
            return None, None
        classifier = await self._fast.classifier() if self._fast is not None and mode != "facts" else None
        started = time.perf_counter()  # the classifier's one-time build (at startup) is not routing time
        if classifier is None:
            if mode in ("fast", "cascade") and self._model is not None:
                return None, None  # no classifier (no embedder): the model decides
            tasks = tuple(Task(name, text, "facts") for name in facts.candidates[:limit])
            return Routed(tasks, "facts", time.perf_counter() - started), None
        router = self._settings.router
        assert self._fast is not None
        vector = (await self._fast.embedder.embed([text]))[0]  # once a turn: memory recall reuses it
        boosts = dict.fromkeys(facts.candidates, router.attachment_boost)
        scores = classifier.classify(vector, facts.names, boosts)
        clauses = split_clauses(text)
        parts = (
            [classifier.classify(part, facts.names, boosts) for part in await self._fast.embedder.embed(clauses)]
            if clauses
            else []
        )
        chosen, confidence = combine(scores, parts, router, limit)
        seconds = time.perf_counter() - started
        if mode == "cascade" and self._model is not None and confidence < self.threshold:
            return None, scores
        tasks = tuple(Task(name, text, "fast") for name in chosen)
        return Routed(tasks, "fast", seconds, confidence=confidence, scores=scores), scores

    async def by_model(
        self,
        history: Sequence[AnyMessage],
        facts: Facts,
        text: str,
        memories: str = "",
        *,
        answer: RunnableConfig | None = None,
    ) -> Routed:
        """The supervisor model's decision among the offered specialists."""
        assert self._model is not None, "by_model needs a supervisor model"
        started = time.perf_counter()
        decision = await self._model.decide(history, facts.offered, text, memories, answer=answer)
        return Routed(
            decision.tasks,
            "model",
            time.perf_counter() - started,
            answer=decision.answer,
            attempts=decision.attempts,
            fell_back=decision.fell_back,
        )
