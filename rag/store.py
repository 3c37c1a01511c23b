"""The Milvus store of document chunks: a Milvus Lite file by default, a Milvus server by URI.

One collection with typed fields, a dense vector (the embedder's) and a BM25 sparse vector that Milvus
computes itself from the analysed `text` field; hybrid search fuses both with RRF. The embedding model
and dimension are written into the collection's properties and checked on open.

Isolation: every read and delete is scoped by `owner_key`, the SHA-256 of the owner id. Filters are
assembled only from field-name constants and values that match `^[0-9a-f]{32}$|^[0-9a-f]{64}$` (hashes
and generated ids), checked right where the filter is built: no caller text ever reaches a filter.
(Milvus Lite rejects filter templates, so validated literals are the safe route on both backends.)

`MilvusClient` is synchronous; `rag.service` calls this class from worker threads.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import EnsembleError
from core.imports import preload_shared_bases
from rag.errors import DocumentsUnavailable, EmbeddingMismatch

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
HEX = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$")
ANALYZER = {
    "tokenizer": "standard",
    "filter": [
        "lowercase",
        {"type": "stemmer", "language": "english"},
        {"type": "stop", "stop_words": ["_english_"]},
    ],
}
META_FIELDS = [
    "doc_id",
    "owner",
    "chat_id",
    "file_name",
    "page",
    "page_end",
    "section",
    "element_type",
    "content_hash",
    "doc_hash",
    "uploaded_at",
    "chunk_index",
    "doc_pages",
    "doc_chunks",
    "chat_key",
]
VARCHAR_LIMITS = {
    "id": 96,
    "doc_id": 32,
    "owner_key": 64,
    "chat_key": 64,
    "owner": 512,
    "chat_id": 512,
    "file_name": 1024,
    "section": 1024,
    "element_type": 64,
    "content_hash": 64,
    "doc_hash": 64,
    "text": 65535,
}
INSERT_BATCH = 256


def key_of(raw: str) -> str:
    """The filter key of an owner or chat id: its SHA-256, so ids of any shape are safe, fixed-width."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _literal(value: str) -> str:
    if not HEX.fullmatch(value):
        raise ValueError("filter values must be 32 or 64 lowercase hex digits")
    return f'"{value}"'


def scope_filter(
    owner_key: str,
    *,
    chat_key: str | None = None,
    doc_id: str | None = None,
    doc_hash: str | None = None,
    first_chunk: bool = False,
) -> str:
    """`owner_key == "<hex>"` plus optional equalities, every value checked to be a hex digest."""
    parts = [f"owner_key == {_literal(owner_key)}"]
    if chat_key is not None:
        parts.append(f"chat_key == {_literal(chat_key)}")
    if doc_id is not None:
        parts.append(f"doc_id == {_literal(doc_id)}")
    if doc_hash is not None:
        parts.append(f"doc_hash == {_literal(doc_hash)}")
    if first_chunk:
        parts.append("chunk_index == 0")
    return " and ".join(parts)


def fit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (Milvus VARCHAR lengths are bytes)."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", errors="ignore")


@dataclass(frozen=True)
class StoredHit:
    id: str
    score: float
    entity: dict[str, Any]


class MilvusStore:
    """Chunks of every owner's documents in one Milvus collection."""

    def __init__(self, client: Any, collection: str, model_name: str, dimension: int) -> None:
        self._client = client
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._open_later: Callable[[], None] | None = None  # set by `deferred` until the first call
        self._open_lock = threading.Lock()
        if client is not None:
            self._opened.set()
        self.collection = collection
        self.model_name = model_name
        self.dimension = dimension

    @property
    def client(self) -> Any:
        """The Milvus client; waits while the store opens in the background (store calls run in threads),
        or opens a deferred store now."""
        if self._open_later is not None:
            with self._open_lock:
                if self._open_later is not None:
                    self._open_later()
                    self._open_later = None
        self._opened.wait()
        if self._error is not None:
            error = self._error
            if isinstance(error, EnsembleError):
                raise type(error)(str(error)) from error
            raise DocumentsUnavailable(str(error)) from error
        return self._client

    @property
    def is_open(self) -> bool:
        """Whether the store was opened (or is opening); False for a deferred store before its first call."""
        return self._open_later is None

    @property
    def state(self) -> str:
        """`ready` (a deferred store too: it opens on first use), `opening`, or the reason it could not be
        opened (never waits)."""
        if self._open_later is not None:
            return "ready"
        if not self._opened.is_set():
            return "opening"
        return "ready" if self._error is None else str(self._error)

    @classmethod
    def opening(cls, uri: str, collection: str, model_name: str, dimension: int, token: str = "") -> MilvusStore:
        """A store that opens in a background thread (Milvus Lite takes seconds to create a collection).

        Every call waits for the opening and raises its error, if any; startup does not wait.
        """
        store = cls(None, collection, model_name, dimension)
        preload_shared_bases("pandas")  # pymilvus imports it
        threading.Thread(target=store._opener(uri, token), name="milvus-open", daemon=True).start()
        return store

    @classmethod
    def deferred(cls, uri: str, collection: str, model_name: str, dimension: int, token: str = "") -> MilvusStore:
        """A store that opens on its first call, in that call's thread: for a Milvus Lite file that does not
        exist yet, so that an app nobody has uploaded to never loads pymilvus, gRPC and pandas (~80 MB)."""
        store = cls(None, collection, model_name, dimension)
        store._open_later = store._opener(uri, token)
        return store

    def _opener(self, uri: str, token: str) -> Callable[[], None]:
        def run() -> None:
            try:
                self._client = type(self).open(uri, self.collection, self.model_name, self.dimension, token)._client
            except BaseException as exc:
                self._error = exc if isinstance(exc, EnsembleError) else DocumentsUnavailable(
                    f"Documents are unavailable: the Milvus store at {uri} could not be opened "
                    f"({type(exc).__name__}: {exc})."
                )
                log.error("the document store could not be opened: %s", self._error)
            finally:
                self._opened.set()

        return run

    @classmethod
    def open(cls, uri: str, collection: str, model_name: str, dimension: int, token: str = "") -> MilvusStore:
        """Connect, create the collection if missing, and check it was built with this embedding model."""
        from pymilvus import MilvusClient

        client = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        store = cls(client, collection, model_name, dimension)
        if client.has_collection(collection):
            store._check_model()
        else:
            store._create()
        client.load_collection(collection)
        return store

    def _properties(self) -> dict[str, str]:
        return {"ensemble.app": "documents", "ensemble.schema": str(SCHEMA_VERSION),
                "ensemble.embedding_model": self.model_name, "ensemble.dimension": str(self.dimension)}

    def _check_model(self) -> None:
        info = self.client.describe_collection(self.collection)
        properties = info.get("properties") or {}
        try:
            stored_model = str(properties["ensemble.embedding_model"])
            stored_dim = int(properties["ensemble.dimension"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingMismatch(
                f"The Milvus collection “{self.collection}” was not created by Ensemble's documents feature; "
                "set ENSEMBLE_RAG__COLLECTION to another name."
            ) from exc
        dense = [f for f in info.get("fields", []) if f.get("name") == "dense"]
        field_dim = int((dense[0].get("params") or {}).get("dim", stored_dim)) if dense else stored_dim
        if stored_model != self.model_name or stored_dim != self.dimension or field_dim != self.dimension:
            raise EmbeddingMismatch(
                f"The document index “{self.collection}” was built with the embedding model {stored_model} "
                f"({stored_dim}-d), but the configured model is {self.model_name} ({self.dimension}-d). "
                "Mixing them would return wrong passages: configure the original model again, or set "
                "ENSEMBLE_RAG__COLLECTION to a new collection and upload the documents again."
            )

    def _create(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        schema = self.client.create_schema(
            auto_id=False, enable_dynamic_field=False, description="Ensemble document chunks"
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=VARCHAR_LIMITS["id"])
        for name in (
            "doc_id",
            "owner_key",
            "chat_key",
            "owner",
            "chat_id",
            "file_name",
            "section",
            "element_type",
            "content_hash",
            "doc_hash",
        ):
            schema.add_field(name, DataType.VARCHAR, max_length=VARCHAR_LIMITS[name])
        for name in ("page", "page_end", "chunk_index", "doc_pages", "doc_chunks"):
            schema.add_field(name, DataType.INT32)
        schema.add_field("uploaded_at", DataType.INT64)
        schema.add_field(
            "text",
            DataType.VARCHAR,
            max_length=VARCHAR_LIMITS["text"],
            enable_analyzer=True,
            analyzer_params=ANALYZER,
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        index = self.client.prepare_index_params()
        index.add_index(
            "dense", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200}
        )
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        for name in ("owner_key", "chat_key", "doc_id", "doc_hash"):
            index.add_index(name, index_type="INVERTED")
        self.client.create_collection(
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level="Strong",
        )
        self.client.alter_collection_properties(self.collection, properties=self._properties())

    # ------------------------------------------------------------------------------------ writes

    def insert(self, rows: Sequence[dict[str, Any]], *, flush: bool = True) -> None:
        """Insert rows, then flush (unless the caller flushes once after several inserts): sealed, indexed
        segments search ~10x faster than growing ones."""
        for start in range(0, len(rows), INSERT_BATCH):
            self.client.insert(self.collection, [self._row(r) for r in rows[start : start + INSERT_BATCH]])
        if flush:
            self.flush()

    def flush(self) -> None:
        self.client.flush(self.collection)

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for name, limit in VARCHAR_LIMITS.items():
            if name in out:
                out[name] = fit(str(out[name]), limit)
        return out

    def delete(self, filter_expr: str) -> int:
        count = self.count(filter_expr)
        if count:
            self.client.delete(self.collection, filter=filter_expr)
        return count

    # ------------------------------------------------------------------------------------- reads

    def count(self, filter_expr: str) -> int:
        rows = self.client.query(self.collection, filter=filter_expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def query(self, filter_expr: str, fields: Sequence[str], limit: int = 16384) -> list[dict[str, Any]]:
        return list(
            self.client.query(self.collection, filter=filter_expr, output_fields=list(fields), limit=limit)
        )

    def hybrid(
        self, filter_expr: str, query_text: str, vector: list[float], limit: int, candidates: int
    ) -> list[StoredHit]:
        """Dense + BM25, each `candidates` deep, fused by reciprocal rank (k=60)."""
        from pymilvus import AnnSearchRequest, RRFRanker

        if not _has_terms(query_text):
            return self.dense(filter_expr, vector, limit)
        requests = [
            AnnSearchRequest(
                data=[vector],
                anns_field="dense",
                param={"metric_type": "COSINE", "params": {"ef": max(64, candidates)}},
                limit=candidates,
                expr=filter_expr,
            ),
            AnnSearchRequest(
                data=[query_text],
                anns_field="sparse",
                param={"metric_type": "BM25"},
                limit=candidates,
                expr=filter_expr,
            ),
        ]
        result = self.client.hybrid_search(
            self.collection, requests, RRFRanker(60), limit=limit, output_fields=[*META_FIELDS, "text"]
        )
        return _hits(result)

    def dense(self, filter_expr: str, vector: list[float], limit: int) -> list[StoredHit]:
        result = self.client.search(
            self.collection,
            data=[vector],
            anns_field="dense",
            filter=filter_expr,
            limit=limit,
            search_params={"metric_type": "COSINE", "params": {"ef": max(64, limit)}},
            output_fields=[*META_FIELDS, "text"],
        )
        return _hits(result)

    def close(self) -> None:
        if self._open_later is not None:  # never opened: nothing to close
            return
        self._opened.wait()
        if self._client is not None:
            self._client.close()


def _has_terms(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _hits(result: Any) -> list[StoredHit]:
    hits: list[StoredHit] = []
    for hit in result[0] if result else []:
        entity = dict(hit.get("entity") or {})
        hits.append(StoredHit(id=str(hit.get("id")), score=float(hit.get("distance") or 0.0), entity=entity))
    return hits


def now() -> int:
    return int(time.time())
