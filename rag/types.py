"""Typed values that cross the `rag` API: files in, progress, per-file results, hits, documents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

Stage = Literal[
    "queued", "checking", "parsing", "embedding", "storing", "done", "duplicate", "failed", "cancelled"
]
Outcome = Literal["ingested", "duplicate", "failed", "cancelled"]


class UploadedFile(Protocol):
    """Anything with a display name and a path on disk (the UI layer's `FileRef` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str | Path: ...


@dataclass(frozen=True)
class LocalFile:
    """A file on disk to ingest, for callers without a `FileRef` (benchmarks, tests)."""

    name: str
    path: str | Path


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of a document, with where it came from."""

    text: str
    index: int
    page: int | None  # 1-based first page (slide, sheet) of the passage; None for unpaged formats
    page_end: int | None
    section: str  # the heading the passage sits under ("" when the document has none)
    element_type: str  # unstructured's category of the passage: NarrativeText, Table, ListItem, ...


@dataclass(frozen=True)
class ParsedDocument:
    """What the parser made of one file."""

    chunks: tuple[Chunk, ...]
    pages: int  # pages, slides or sheets; 0 for unpaged formats


@dataclass(frozen=True)
class IngestProgress:
    """One step of one file's ingestion, for the chat's progress display."""

    file_name: str
    stage: Stage
    pages_done: int = 0
    pages_total: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    message: str = ""


ProgressCallback = Callable[[IngestProgress], Awaitable[None] | None]


@dataclass(frozen=True)
class IngestResult:
    """How one file fared. `message` is written for the chat user."""

    file_name: str
    outcome: Outcome
    message: str
    doc_id: str | None = None
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome in ("ingested", "duplicate")


@dataclass(frozen=True)
class SearchHit:
    """A retrieved passage with its source; `score` is the fused (or reranked) relevance."""

    doc_id: str
    file_name: str
    chat_id: str
    page: int | None
    page_end: int | None
    section: str
    element_type: str
    text: str
    score: float
    chunk_index: int

    @property
    def location(self) -> str:
        """`p. 3`, `pp. 3–4` or the section title, for a citation."""
        if self.page is not None:
            if self.page_end is not None and self.page_end != self.page:
                return f"pp. {self.page}–{self.page_end}"
            return f"p. {self.page}"
        return f"§ {self.section}" if self.section else ""


@dataclass(frozen=True)
class DocumentInfo:
    """A stored document of one owner."""

    doc_id: str
    file_name: str
    chat_id: str
    pages: int
    chunks: int
    content_hash: str
    uploaded_at: datetime
    embedding_model: str
