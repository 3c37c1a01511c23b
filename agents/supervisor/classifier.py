"""The router's fast stage: which specialist (or a direct answer) a request is like, from labelled exemplars.

Each label (`direct`, and each specialist's name) has exemplar requests: `agents/supervisor/exemplars/
direct.txt`, and per specialist the `exemplars.txt` of its package plus those its spec carries (a spec
made at startup brings its own). They are embedded once, with the embedder the app already runs (the
local all-MiniLM-L6-v2 by default), and cached on disk by model and text. A request is embedded once;
each label's score is the mean cosine similarity of its `neighbours` nearest exemplars; a softmax over
the scores (temperature fitted on a held-out split of the evaluation set, docs/routing.md) gives a
probability per label, read as the stage's confidence.

No model call, no I/O per request besides the one embedding: a few milliseconds on the CPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agents.specialists.base import SpecialistSpec
from core.embeddings import Embedder
from core.settings import RouterSettings

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DIRECT = "direct"  # the label of "the supervisor answers itself"
EXEMPLARS_FILE = "exemplars.txt"
DIRECT_FILE = Path(__file__).with_name("exemplars") / "direct.txt"


def read_exemplars(path: Path) -> list[str]:
    """One request per line; blank lines and `#` comments skipped."""
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _package_dirs(spec: SpecialistSpec) -> list[Path]:
    """Where a spec's `exemplars.txt` may be: `agents/specialists/<name>/`, and its build function's package."""
    dirs: list[Path] = []
    found = importlib.util.find_spec("agents.specialists")
    if found is not None and found.submodule_search_locations:
        dirs += [Path(location) / spec.name for location in found.submodule_search_locations]
    module = sys.modules.get(getattr(spec.build, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file).parent
        dirs.append(path)
    return dirs


def spec_exemplars(spec: SpecialistSpec) -> list[str]:
    """A specialist's exemplars: those its spec carries, then those of its package's file, once each."""
    texts = list(spec.exemplars)
    seen: set[Path] = set()
    for folder in _package_dirs(spec):
        path = (folder / EXEMPLARS_FILE).resolve()
        if path not in seen:
            seen.add(path)
            texts += read_exemplars(path)
    return list(dict.fromkeys(texts))


def exemplar_sets(specs: Iterable[SpecialistSpec]) -> dict[str, list[str]]:
    """`direct` and every spec that has exemplars (a spec with none is left to the model stage)."""
    sets = {DIRECT: read_exemplars(DIRECT_FILE)}
    for spec in specs:
        texts = spec_exemplars(spec)
        if texts:
            sets[spec.name] = texts
        else:
            log.info("router: specialist %s has no exemplars; only the model stage can choose it", spec.name)
    return sets


@dataclass(frozen=True)
class Scores:
    """Per-label probabilities (they sum to 1 over the labels that were allowed), best first."""

    probabilities: tuple[tuple[str, float], ...]

    @property
    def best(self) -> tuple[str, float]:
        return self.probabilities[0]

    def of(self, label: str) -> float:
        return dict(self.probabilities).get(label, 0.0)


def softmax(scores: Mapping[str, float], temperature: float) -> dict[str, float]:
    top = max(scores.values())
    weights = {label: math.exp((value - top) / temperature) for label, value in scores.items()}
    total = sum(weights.values())
    return {label: weight / total for label, weight in weights.items()}


def scores_from(
    similarities: Mapping[str, float],
    allowed: Iterable[str],
    boosts: Mapping[str, float] | None,
    settings: RouterSettings,
) -> Scores:
    """Probabilities from per-label similarities: only allowed labels (and `direct`), boosts added."""
    wanted = {DIRECT, *allowed}
    sims = {label: value for label, value in similarities.items() if label in wanted}
    if not sims:
        return Scores(((DIRECT, 1.0),))
    if DIRECT in sims:
        sims[DIRECT] += settings.direct_bias
    for label, boost in (boosts or {}).items():
        if label in sims:
            sims[label] += boost
    probabilities = softmax(sims, settings.temperature)
    return Scores(tuple(sorted(probabilities.items(), key=lambda pair: pair[1], reverse=True)))


def pick(scores: Scores, settings: RouterSettings, limit: int) -> list[str]:
    """The specialists chosen from the scores: the best label (none when it is `direct`), and others
    whose probability reaches `second_at`, up to `limit`."""
    label = scores.best[0]
    if label == DIRECT:
        return []
    chosen = [label]
    for other, p in scores.probabilities[1:]:
        if other != DIRECT and p >= settings.second_at and len(chosen) < limit:
            chosen.append(other)
    return chosen


# Where a request that asks for several things splits: "..., then ...", "...; ...", "... and then ...",
# "... and <verb> ..." for verbs that start a task of their own, and between sentences.
_TASK_VERBS = (
    "write|draw|generate|make|create|paint|search|find|look|check|tell|describe|summari[sz]e|remember|"
    "translate|give|list|read|compare|explain|show|rewrite|convert|design|illustrate|fix|debug|compose"
)
_CLAUSE_BREAK = re.compile(
    rf",?\s+(?:and\s+)?then\s+|;\s*|(?<=[.!?])\s+(?=[A-Z])|,?\s+and\s+(?:also\s+)?(?=(?:{_TASK_VERBS})\b)",
    re.I,
)
MIN_CLAUSE_WORDS = 3


def split_clauses(text: str) -> list[str]:
    """The parts of a request that asks for several things (none when it asks for one)."""
    parts = [p.strip(" ,.;") for p in _CLAUSE_BREAK.split(text)]
    parts = [p for p in parts if len(p.split()) >= MIN_CLAUSE_WORDS]
    return parts if len(parts) >= 2 else []


def combine(whole: Scores, parts: Sequence[Scores], settings: RouterSettings, limit: int) -> tuple[list[str], float]:
    """The specialists chosen and the confidence: the parts' labels when at least two parts confidently ask
    different specialists (a request for several things), else the whole request's."""
    labels: dict[str, float] = {}
    for scores in parts:
        label, p = scores.best
        if label != DIRECT and p >= settings.clause_at and label not in labels:
            labels[label] = p
    if len(labels) >= 2:
        return list(labels)[:limit], min(labels.values())
    return pick(whole, settings, limit), whole.best[1]


class FastClassifier:
    """Labelled exemplar vectors, and the per-label nearest-exemplar score of a request's vector."""

    def __init__(self, labels: Sequence[str], vectors: np.ndarray, owners: Sequence[int], settings: RouterSettings):
        import numpy as np

        self.labels = tuple(labels)
        self._settings = settings
        self._vectors = vectors.astype(np.float32)
        owner_array = np.asarray(owners)
        self._rows = {label: np.flatnonzero(owner_array == i) for i, label in enumerate(self.labels)}

    @property
    def size(self) -> int:
        return int(self._vectors.shape[0])

    def similarities(self, vector: Sequence[float]) -> dict[str, float]:
        """Each label's score: the mean cosine similarity of its `neighbours` nearest exemplars."""
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        sims = self._vectors @ query
        m = self._settings.neighbours
        out: dict[str, float] = {}
        for label, rows in self._rows.items():
            if len(rows) == 0:
                continue
            values = sims[rows]
            top = np.partition(values, -min(m, len(values)))[-min(m, len(values)) :]
            out[label] = float(top.mean())
        return out

    def classify(
        self,
        vector: Sequence[float],
        allowed: Iterable[str],
        boosts: Mapping[str, float] | None = None,
        settings: RouterSettings | None = None,
    ) -> Scores:
        """Probabilities over the `allowed` labels (`direct` always is), with fact boosts added to the
        similarities (e.g. an attached image for vision) and `direct`'s bias as the safe default."""
        return scores_from(self.similarities(vector), allowed, boosts, settings or self._settings)

    @classmethod
    async def build(
        cls,
        embedder: Embedder,
        sets: Mapping[str, Sequence[str]],
        settings: RouterSettings,
        cache: Path | None = None,
    ) -> FastClassifier:
        """Embed every exemplar (or read them from `cache`, keyed by model and texts)."""
        import numpy as np

        labels = [label for label, texts in sets.items() if texts]
        texts = [text for label in labels for text in sets[label]]
        owners = [i for i, label in enumerate(labels) for _ in sets[label]]
        key = hashlib.sha256(json.dumps([embedder.model_name, texts]).encode()).hexdigest()[:20]
        path = None if cache is None else cache / f"router-exemplars-{key}.npy"
        vectors: np.ndarray | None = None
        if path is not None and path.is_file():
            try:
                loaded = await asyncio.to_thread(np.load, path)
                vectors = loaded if loaded.shape[0] == len(texts) else None
            except (OSError, ValueError):
                vectors = None
        if vectors is None:
            vectors = np.asarray(await embedder.embed(texts), dtype=np.float32)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f"{path.name}.tmp.npy")
                    await asyncio.to_thread(np.save, tmp, vectors)
                    tmp.replace(path)
                except OSError as exc:
                    log.info("router: exemplar vectors not cached (%s)", exc)
        log.info("router: %d exemplars over %d labels (%s)", len(texts), len(labels), ", ".join(labels))
        return cls(labels, vectors, owners, settings)


class RecentVectors:
    """An embedder that remembers the vectors of its last few single texts: a turn's request is embedded
    once, and the router and memory recall share it."""

    def __init__(self, inner: Embedder, size: int = 64) -> None:
        self._inner = inner
        self._size = size
        # text -> its vector, being computed or done: the router and recall asking at once embed it once
        self._recent: dict[str, asyncio.Future[list[float]]] = {}
        self.model_name = inner.model_name
        self.dimension = inner.dimension

    @property
    def inner(self) -> Embedder:
        return self._inner

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if len(texts) != 1:
            return await self._inner.embed(texts)
        text = texts[0]
        pending = self._recent.get(text)
        if pending is None or (pending.done() and (pending.cancelled() or pending.exception() is not None)):
            pending = asyncio.ensure_future(self._first(text))
            self._recent[text] = pending
            while len(self._recent) > self._size:
                self._recent.pop(next(iter(self._recent)))
        vector = await asyncio.shield(pending)
        self.dimension = self._inner.dimension  # a server's embedder learns its dimension on first use
        return [vector]

    async def _first(self, text: str) -> list[float]:
        return (await self._inner.embed([text]))[0]

    async def aclose(self) -> None:
        """Nothing of its own: the inner embedder is closed by its owner."""
