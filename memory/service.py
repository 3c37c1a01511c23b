"""The long-term memory of each user: remember, recall, list and forget facts, one namespace per user."""

from __future__ import annotations

import array
import asyncio
import base64
import dataclasses
import hashlib
import logging
import math
import operator
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langgraph.store.base import BaseStore, Item, PutOp

from core.embeddings import Embedder
from core.settings import MemorySettings, StructuredOutput
from memory.extraction import extract_facts, speaks_of_the_user
from memory.ids import MEMORY_ROOT, memory_namespace, user_id_from_namespace, validate_user_id
from memory.matching import keyword_score, same_words, terms
from memory.records import Fact, Memory, Remembered

log = logging.getLogger(__name__)

RecallMode = Literal["index", "scan", "keyword"]

_LOCK_STRIPES = 64
# A fact whose key matches a memory's replaces it only if the two are at least this close in meaning
# (or share a word): "name is Ana" → "name is Bea" is ~0.55; an unrelated text under a wrong key ~0.2.
KEY_RELATED_SIMILARITY = 0.5
REINDEX_STOP_TIMEOUT = 30.0  # seconds aclose() waits for a running reindex to reach a safe stop


@dataclass(frozen=True)
class _Stored:
    memory: Memory
    vector: bytes | None  # unit-length float32, as packed in the value (scan mode)


class MemoryService:
    """Per-user memories in a LangGraph store.

    Every method takes the user id from the caller (the app's run context, never a model), validates
    it and touches only that user's namespace; every result is checked to come from that namespace.

    Recall modes: `index` (the store's vector index), `scan` (each memory keeps its embedding; the
    user's memories are compared in process) and `keyword` (shared words, then recency).
    """

    def __init__(
        self,
        store: BaseStore,
        settings: MemorySettings,
        *,
        backend: str,
        mode: RecallMode,
        embedder: Embedder | None = None,
        stack: AsyncExitStack | None = None,
    ) -> None:
        if mode != "keyword" and embedder is None:
            raise ValueError(f"{mode} recall needs an embedder")
        self._store = store
        self._settings = settings
        self._backend = backend
        self._mode: RecallMode = mode
        self._embedder = embedder if mode == "scan" else None  # scan: vectors computed here
        self._model = embedder.model_name if embedder is not None and mode != "keyword" else None
        self._reindexing: asyncio.Task[int] | None = None
        self._closing = asyncio.Event()
        self._stack = stack
        # Writes of one user are serialised (so dedupe sees the previous write); a fixed set of
        # striped locks keeps this bounded however many users there are.
        self._locks = tuple(asyncio.Lock() for _ in range(_LOCK_STRIPES))

    @property
    def backend(self) -> str:
        """`sqlite` or `postgres`."""
        return self._backend

    @property
    def mode(self) -> RecallMode:
        return self._mode

    @property
    def semantic(self) -> bool:
        """Whether recall compares meanings (embeddings) rather than words."""
        return self._mode != "keyword"

    @property
    def description(self) -> str:
        recall = {
            "index": "semantic recall through the store's vector index",
            "scan": "semantic recall over each user's own memories (no vector index)",
            "keyword": "keyword and recency recall (no embeddings)",
        }[self._mode]
        return f"{self._backend} store, {recall}"

    @property
    def store(self) -> BaseStore:
        return self._store

    async def aclose(self) -> None:
        """Close the store's connections; the service is unusable afterwards."""
        self._closing.set()
        if self._reindexing is not None:
            # Let reindex stop between two store operations: a store's batched op cancelled mid-query
            # would keep a pooled connection checked out while the pool closes.
            task, self._reindexing = self._reindexing, None
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=REINDEX_STOP_TIMEOUT)
            except TimeoutError:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    # --- reading -------------------------------------------------------------------------------

    async def list_memories(self, user_id: str) -> list[Memory]:
        """All of this user's memories, most recently updated first."""
        return [s.memory for s in await self._load(memory_namespace(user_id))]

    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory of this user by id, or None."""
        namespace = memory_namespace(user_id)
        if not _plausible_id(memory_id):
            return None
        item = await self._store.aget(namespace, memory_id)
        if item is None or tuple(item.namespace) != namespace:
            return None
        return _to_memory(item, None)

    async def recall(self, user_id: str, query: str, k: int | None = None) -> list[Memory]:
        """The `k` memories most relevant to `query`, best first (`recall_k` when `k` is None)."""
        limit = self._settings.recall_k if k is None else k
        namespace = memory_namespace(user_id)
        if limit <= 0:
            return []
        query = query.strip()
        try:
            if self._mode == "index" and query:
                items = await self._store.asearch(namespace, query=query, limit=limit)
                return [_to_memory(item, item.score) for item in items if tuple(item.namespace) == namespace]
            stored = await self._load(namespace)
            if not query:
                return [s.memory for s in stored[:limit]]
            if self._mode == "scan":
                return [_scored(s.memory, score) for s, score in (await self._similar(query, stored))[:limit]]
        except Exception as exc:  # most likely the embedder (model or server); a store failure recurs below
            if self._mode == "keyword":
                raise
            log.warning("memory: semantic recall failed (%s: %s); using keywords", type(exc).__name__, exc)
            stored = await self._load(namespace)
        wanted = terms(query)
        scored = [(keyword_score(wanted, s.memory.text), s.memory) for s in stored]
        ranked = sorted(scored, key=lambda pair: (pair[0], pair[1].updated_at), reverse=True)
        hits = [_scored(m, score) for score, m in ranked if score]
        hit_ids = {m.id for m in hits}
        return (hits + [s.memory for s in stored if s.memory.id not in hit_ids])[:limit]

    # --- writing -------------------------------------------------------------------------------

    async def remember(self, user_id: str, facts: Iterable[Fact | str]) -> list[Remembered]:
        """Store facts about the user. A fact with the same key, the same words or (semantic modes)
        a meaning at least `update_similarity` close updates that memory instead of adding one."""
        namespace = memory_namespace(user_id)
        wanted = [f if isinstance(f, Fact) else Fact(text=f) for f in facts]
        outcomes: list[Remembered] = []
        async with self._lock(user_id):
            stored = await self._load(namespace)
            vectors: list[list[float] | None] = [None] * len(wanted)
            if self._embedder is not None and wanted:
                try:
                    vectors = list(await self._embedder.embed([fact.text for fact in wanted]))
                except Exception as exc:  # stored without vectors; the next start's reindex adds them
                    log.warning("memory: embedding failed (%s: %s); no vectors", type(exc).__name__, exc)
            for fact, vector in zip(wanted, vectors, strict=True):
                previous = await self._duplicate_of(namespace, fact, vector, stored)
                now = datetime.now(UTC)
                memory_id = previous.id if previous is not None else uuid.uuid4().hex
                created = previous.created_at if previous is not None else now
                value: dict[str, Any] = {
                    "text": fact.text,
                    "key": fact.key or (previous.key if previous is not None else None),
                    "category": fact.category,
                    "created": created.isoformat(),
                    "updated": now.isoformat(),  # stores differ in timestamp precision (SQLite: seconds)
                }
                await self._put(namespace, memory_id, value, vector)
                memory = Memory.from_value(memory_id, value, created, now, None)
                packed = None if vector is None else _unit_bytes(vector)
                stored = [_Stored(memory, packed)] + [s for s in stored if s.memory.id != memory_id]
                outcomes.append(Remembered(memory, previous))
            await self._evict_oldest(namespace, [s.memory for s in stored])
        return outcomes

    async def forget(self, user_id: str, memory_id: str) -> Memory | None:
        """Delete one of this user's memories by id (or an unambiguous id prefix of 6+ characters)."""
        namespace = memory_namespace(user_id)
        async with self._lock(user_id):
            target = await self._resolve(user_id, memory_id)
            if target is None:
                return None
            await self._store.adelete(namespace, target.id)
            return target

    async def forget_matching(self, user_id: str, text: str) -> list[Memory]:
        """Delete this user's memories that `text` describes; returns what was deleted.

        A memory matches when it contains every significant word of `text` (or `text` verbatim);
        if none does and recall is semantic, memories at least `forget_similarity` close match.
        """
        namespace = memory_namespace(user_id)
        wanted = text.strip()
        if not terms(wanted):
            return []
        async with self._lock(user_id):
            stored = await self._load(namespace)
            doomed = [s.memory for s in stored if _describes(wanted, s.memory.text)]
            if not doomed and self.semantic:
                threshold = self._settings.forget_similarity
                candidates: list[tuple[Memory, float | None]]
                if self._mode == "index":
                    items = await self._store.asearch(namespace, query=wanted, limit=5)
                    mine = [item for item in items if tuple(item.namespace) == namespace]
                    candidates = [(_to_memory(item, item.score), item.score) for item in mine]
                else:
                    candidates = [(s.memory, score) for s, score in (await self._similar(wanted, stored))[:5]]
                doomed = [_scored(m, s) for m, s in candidates if s is not None and s >= threshold]
            await self._delete(namespace, [m.id for m in doomed])
            return doomed

    async def forget_all(self, user_id: str) -> int:
        """Delete every memory of this user; returns how many there were."""
        namespace = memory_namespace(user_id)
        async with self._lock(user_id):
            stored = await self._load(namespace)
            await self._delete(namespace, [s.memory.id for s in stored])
            return len(stored)

    def worth_learning(self, user_text: str) -> bool:
        """Whether a turn whose user said `user_text` is worth an extraction call (`extract_when`)."""
        return self._settings.extract_when == "always" or speaks_of_the_user(user_text)

    async def learn(
        self,
        user_id: str,
        llm: BaseChatModel,
        messages: Sequence[BaseMessage],
        *,
        mode: StructuredOutput = "json_object",
    ) -> list[Remembered]:
        """Extract facts from a finished turn and remember them. Never raises: meant for a background task."""
        try:
            validate_user_id(user_id)
            facts = await asyncio.wait_for(
                extract_facts(llm, messages, mode=mode), timeout=self._settings.extract_timeout
            )
            return await self.remember(user_id, facts) if facts else []
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("memory: learning from a turn failed; nothing was stored")
            return []

    # --- upkeep --------------------------------------------------------------------------------

    def start_reindex(self) -> None:
        """Run `reindex()` in the background (startup calls this; `aclose` cancels it)."""
        if self._model is not None and self._reindexing is None:
            self._reindexing = asyncio.create_task(self._reindex_logged(), name="memory-reindex")

    async def wait_for_reindex(self) -> int:
        """How many memories the background `reindex()` embedded, once it has finished (0 if none ran)."""
        if self._reindexing is None:
            return 0
        return await asyncio.shield(self._reindexing)

    async def reindex(self) -> int:
        """Embed, for this recall mode and model, every memory stored without it; returns how many.

        Memories written while the store had no vector index (or under another embedding model)
        are invisible to vector search, or compared on the fly; this makes them first-class.
        """
        if self._model is None:
            return 0
        done = offset = 0
        while not self._closing.is_set():
            namespaces = await self._store.alist_namespaces(
                prefix=(MEMORY_ROOT,), max_depth=2, limit=100, offset=offset
            )
            for namespace in namespaces:
                user_id = user_id_from_namespace(namespace)
                if user_id is not None and not self._closing.is_set():
                    done += await self._reindex_user(user_id)
            if len(namespaces) < 100:
                return done
            offset += len(namespaces)
        return done

    async def _reindex_user(self, user_id: str) -> int:
        namespace = memory_namespace(user_id)
        async with self._lock(user_id):
            items = await self._store.asearch(namespace, limit=self._settings.max_per_user + 100)
            stale = [i for i in items if tuple(i.namespace) == namespace and not self._embedded(i.value)]
            vectors: list[list[float] | None] = [None] * len(stale)
            if self._embedder is not None and stale:
                texts = [str(i.value.get("text", "")) for i in stale]
                vectors = list(await self._embedder.embed(texts))
            for item, vector in zip(stale, vectors, strict=True):
                value = {k: v for k, v in item.value.items() if k not in ("vec", "vec_model", "indexed_by")}
                self._mark_embedded(value, vector)
                await self._store.aput(namespace, item.key, value)
            return len(stale)

    async def _reindex_logged(self) -> int:
        try:
            count = await self.reindex()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("memory: re-embedding older memories failed; they are still listed and kept")
            return 0
        if count:
            log.info("memory: embedded %d older memories for %s recall (%s)", count, self._mode, self._model)
        return count

    def _mark_embedded(self, value: dict[str, Any], vector: list[float] | None) -> None:
        if self._mode == "index":
            value["indexed_by"] = self._model
        elif self._mode == "scan" and vector is not None:
            value["vec"] = _pack(vector)
            value["vec_model"] = self._model

    def _embedded(self, value: dict[str, Any]) -> bool:
        if self._mode == "index":
            return bool(value.get("indexed_by") == self._model)
        return bool(value.get("vec_model") == self._model and isinstance(value.get("vec"), str))

    # --- internals -----------------------------------------------------------------------------

    def _lock(self, user_id: str) -> asyncio.Lock:
        digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=4).digest()
        return self._locks[int.from_bytes(digest, "big") % _LOCK_STRIPES]

    async def _load(self, namespace: tuple[str, str]) -> list[_Stored]:
        """The namespace's memories (newest first) with their embeddings where this model made them."""
        items = await self._store.asearch(namespace, limit=self._settings.max_per_user + 100)
        model = self._embedder.model_name if self._embedder is not None else None
        stored = [
            _Stored(
                _to_memory(item, None),
                _unpack(item.value.get("vec")) if model and item.value.get("vec_model") == model else None,
            )
            for item in items
            if tuple(item.namespace) == namespace
        ]
        return sorted(stored, key=lambda s: s.memory.updated_at, reverse=True)

    async def _similar(self, query: str, stored: Sequence[_Stored]) -> list[tuple[_Stored, float]]:
        """`stored` ranked by cosine similarity to `query` (embedding any memory that lacks a vector)."""
        if self._embedder is None or not stored:
            return []
        missing = [s.memory.text for s in stored if s.vector is None]
        fresh = iter(await self._embedder.embed(missing)) if missing else iter(())
        query_vector = (await self._embedder.embed([query]))[0]
        rows = [_unit_bytes(next(fresh)) if s.vector is None else s.vector for s in stored]
        scored = zip(stored, _dot_scores(query_vector, rows), strict=True)
        return sorted(scored, key=lambda pair: pair[1], reverse=True)

    async def _duplicate_of(
        self,
        namespace: tuple[str, str],
        fact: Fact,
        vector: list[float] | None,
        stored: Sequence[_Stored],
    ) -> Memory | None:
        """The memory this fact restates or updates, if any.

        Same words always; the same key only when the two texts are related at all (a shared word or
        a loose semantic match), so a small model's wrong key cannot overwrite an unrelated memory;
        otherwise, in the semantic modes, a meaning at least `update_similarity` close.
        """
        for s in stored:
            if same_words(s.memory.text, fact.text):
                return s.memory
        if not stored:
            return None
        scores = await self._similarities(namespace, fact.text, vector, stored)
        if fact.key is not None:
            wanted = terms(fact.text)
            for s in stored:
                if s.memory.key == fact.key and (
                    wanted & terms(s.memory.text) or scores.get(s.memory.id, 0.0) >= KEY_RELATED_SIMILARITY
                ):
                    return s.memory
        if scores:
            best_id, best = max(scores.items(), key=lambda pair: pair[1])
            if best >= self._settings.update_similarity:
                return next((s.memory for s in stored if s.memory.id == best_id), None)
        return None

    async def _put(
        self,
        namespace: tuple[str, str],
        memory_id: str,
        value: dict[str, Any],
        vector: list[float] | None,
    ) -> None:
        """Store a memory; if the index's embedder fails, store it unindexed (the next reindex embeds it)."""
        if self._mode == "index":
            try:
                await self._store.aput(namespace, memory_id, {**value, "indexed_by": self._model})
                return
            except Exception as exc:  # most likely the embedder; a store failure recurs just below
                log.warning("memory: indexing failed (%s: %s); storing unindexed", type(exc).__name__, exc)
                await self._store.aput(namespace, memory_id, value, index=False)
                return
        self._mark_embedded(value, vector)
        await self._store.aput(namespace, memory_id, value)

    async def _similarities(
        self,
        namespace: tuple[str, str],
        text: str,
        vector: list[float] | None,
        stored: Sequence[_Stored],
    ) -> dict[str, float]:
        """Cosine similarity of `text` to the stored memories (the closest ones; none in keyword mode)."""
        if self._mode == "index":
            try:
                items = await self._store.asearch(namespace, query=text, limit=min(len(stored), 20))
            except Exception:
                log.warning("memory: similarity search failed; deduplicating by words and keys only")
                return {}
            return {i.key: i.score for i in items if tuple(i.namespace) == namespace and i.score is not None}
        if self._mode == "scan" and vector is not None:
            embedded = [s for s in stored if s.vector is not None]
            rows = [s.vector for s in embedded if s.vector is not None]
            return {s.memory.id: score for s, score in zip(embedded, _dot_scores(vector, rows), strict=True)}
        return {}

    async def _resolve(self, user_id: str, memory_ref: str) -> Memory | None:
        ref = memory_ref.strip().lower()
        if not _plausible_id(ref):
            return None
        exact = await self.get(user_id, ref)
        if exact is not None or len(ref) < 6:
            return exact
        matches = [m for m in await self.list_memories(user_id) if m.id.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    async def _evict_oldest(self, namespace: tuple[str, str], memories: Sequence[Memory]) -> None:
        surplus = len(memories) - self._settings.max_per_user
        if surplus > 0:
            oldest = sorted(memories, key=lambda m: m.updated_at)[:surplus]
            log.info("memory: a user went past %d memories; dropping the %d oldest",
                     self._settings.max_per_user, surplus)
            await self._delete(namespace, [m.id for m in oldest])

    async def _delete(self, namespace: tuple[str, str], ids: Sequence[str]) -> None:
        if ids:
            await self._store.abatch([PutOp(namespace, memory_id, None) for memory_id in ids])


def _describes(wanted: str, text: str) -> bool:
    return keyword_score(wanted, text) >= 1.0 or wanted.casefold() in text.casefold()


def _plausible_id(memory_id: str) -> bool:
    return 0 < len(memory_id) <= 64 and all(ch in "0123456789abcdef" for ch in memory_id)


def _scored(memory: Memory, score: float | None) -> Memory:
    return dataclasses.replace(memory, score=score)


def _to_memory(item: Item, score: float | None) -> Memory:
    value: dict[str, Any] = item.value
    created = _moment(value.get("created"), item.created_at)
    updated = _moment(value.get("updated"), item.updated_at)
    return Memory.from_value(item.key, value, created, updated, score)


def _moment(text: object, fallback: datetime) -> datetime:
    """Our own microsecond timestamp from the value, else the store's (whose precision varies)."""
    moment = fallback
    if isinstance(text, str):
        with suppress(ValueError):
            moment = datetime.fromisoformat(text)
    return _aware(moment)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(map(operator.mul, vector, vector)))
    return [x / norm for x in vector] if norm else [0.0 for _ in vector]


def _unit_bytes(vector: Sequence[float]) -> bytes:
    """A vector scaled to unit length as float32 bytes: cosine similarity is then a dot product."""
    return array.array("f", _unit(vector)).tobytes()


def _pack(vector: Sequence[float]) -> str:
    return base64.b64encode(_unit_bytes(vector)).decode("ascii")


def _unpack(packed: object) -> bytes | None:
    if not isinstance(packed, str):
        return None
    try:
        raw = base64.b64decode(packed, validate=True)
    except ValueError:
        return None
    return raw if raw and len(raw) % 4 == 0 else None


def _dot_scores(query: Sequence[float], rows: Sequence[bytes]) -> list[float]:
    """Cosine similarity of `query` to each unit-length float32 row (0 for a row of other dimensions)."""
    if not rows:
        return []
    unit = _unit(query)
    width = 4 * len(unit)
    try:
        import numpy as np
    except ImportError:  # numpy comes with pymilvus and sentence-transformers; plain Python otherwise
        return [
            sum(map(operator.mul, unit, array.array("f", row))) if len(row) == width else 0.0 for row in rows
        ]
    matrix = np.frombuffer(b"".join(r if len(r) == width else bytes(width) for r in rows), dtype=np.float32)
    return [float(x) for x in matrix.reshape(len(rows), len(unit)) @ np.asarray(unit, dtype=np.float32)]
