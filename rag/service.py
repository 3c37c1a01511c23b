"""`DocumentService`: the async API of the documents feature, built once at startup by `start(settings)`.

    service = await start(settings)
    results = await service.ingest(files, owner=user_id, chat_id=thread_id, progress_cb=cb, cancel=event)
    hits = await service.search("what does clause 4 say?", owner=user_id, chat_id=thread_id)
    docs = await service.list_documents(user_id)
    await service.delete_document(user_id, docs[0].doc_id)
    await service.delete_chat(user_id, thread_id)
    await service.aclose()

Every file gets its own `IngestResult` with a message for the chat; one bad file never stops the others
and never touches what was stored before.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from core.databases import milvus_uri
from core.errors import EnsembleError
from core.settings import Settings
from rag import parsing
from rag.embeddings import Embedder, EmbeddingError, LocalEmbedder, build_embedder
from rag.errors import DocumentRejected, DocumentsUnavailable, EmbeddingMismatch
from rag.pool import ParserPool
from rag.rerank import TEIReranker
from rag.safety import CheckedFile, check_file
from rag.store import MilvusStore, StoredHit, key_of, now, scope_filter
from rag.types import (
    Chunk,
    DocumentInfo,
    IngestProgress,
    IngestResult,
    ParsedDocument,
    ProgressCallback,
    SearchHit,
    Stage,
    UploadedFile,
)

log = logging.getLogger(__name__)

MIN_EMBEDDED_CHARS = 320  # the opening of a passage that its dense vector reads, at least
EMBED_BATCH = 128  # passages per embedding call; the next batch embeds while this one is stored
DOC_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ID_CHARS = 512
HAS_DOCUMENTS_SECONDS = 30.0  # how long an owner's "has documents" answer is reused (`has_documents`)
HAS_DOCUMENTS_OWNERS = 10_000  # owners whose answer is remembered at most


# The stored fields of a chunk that a re-upload into another chat copies as they are.
COPIED_FIELDS = (
    "chunk_index", "page", "page_end", "section", "element_type", "content_hash", "doc_pages", "doc_chunks", "text",
)

class Cancelled(Exception):
    """The user cancelled the upload."""


class DocumentService:
    """Ingest, search, list and delete one owner's documents; shared by all users of the app."""

    def __init__(
        self,
        settings: Settings,
        store: MilvusStore,
        embedder: Embedder,
        *,
        reranker: TEIReranker | None = None,
        pool: ParserPool | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.reranker = reranker
        self.pool = pool or ParserPool(settings.rag.parse_workers)
        self._http = http  # owned: closed by aclose
        self._options = parsing.ChunkOptions(
            settings.rag.chunk_size, settings.rag.chunk_overlap, settings.rag.combine_under
        )
        # owner -> (has documents, when asked): the router asks every turn (see `has_documents`)
        self._has_documents: dict[str, tuple[bool, float]] = {}

    # ------------------------------------------------------------------------------------ ingest

    async def ingest(
        self,
        files: Sequence[UploadedFile],
        owner: str,
        chat_id: str,
        progress_cb: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> list[IngestResult]:
        """Parse, embed and store `files` for `owner` in chat `chat_id`, one result per file, in order."""
        _check_id(owner, "owner")
        _check_id(chat_id, "chat_id")
        results: list[IngestResult] = []
        try:
            for file in files:
                name = Path(str(file.name)).name or "unnamed file"
                if cancel is not None and cancel.is_set():
                    results.append(IngestResult(name, "cancelled", f"“{name}” was not added: upload cancelled."))
                    await _emit(progress_cb, IngestProgress(name, "cancelled"))
                    continue
                results.append(await self._ingest_one(file, name, owner, chat_id, progress_cb, cancel))
        finally:
            self._has_documents.pop(owner, None)
        return results

    async def _ingest_one(
        self,
        file: UploadedFile,
        name: str,
        owner: str,
        chat_id: str,
        progress_cb: ProgressCallback | None,
        cancel: asyncio.Event | None,
    ) -> IngestResult:
        started = time.perf_counter()

        async def emit(stage: Stage, **counts: Any) -> None:
            await _emit(progress_cb, IngestProgress(name, stage, **counts))

        async def failed(message: str) -> IngestResult:
            await emit("failed", message=message)
            return IngestResult(name, "failed", message, seconds=time.perf_counter() - started)

        try:
            await emit("checking")
            checked = await asyncio.to_thread(
                check_file,
                file.path,
                name,
                max_bytes=self.settings.uploads.max_bytes,
                max_unzipped_bytes=self.settings.rag.max_unzipped_bytes,
            )
            duplicate = await self._reuse_duplicate(checked, owner, chat_id)
            if duplicate is not None:
                await emit(
                    "duplicate",
                    pages_done=duplicate.pages,
                    pages_total=duplicate.pages,
                    chunks_done=duplicate.chunks,
                    chunks_total=duplicate.chunks,
                    message=duplicate.message,
                )
                return IngestResult(
                    name,
                    "duplicate",
                    duplicate.message,
                    duplicate.doc_id,
                    duplicate.pages,
                    duplicate.chunks,
                    time.perf_counter() - started,
                )
            parsed = await self._parse(checked, emit, cancel)
            chunks = parsed.chunks
            if not chunks:
                raise DocumentRejected(_no_text(checked))
            if len(chunks) > self.settings.rag.max_chunks:
                raise DocumentRejected(
                    f"“{name}” is too large to index: {len(chunks)} passages, over the limit "
                    f"of {self.settings.rag.max_chunks} per file. Split it and upload the parts."
                )
            doc_id = uuid.uuid4().hex
            await self._embed_and_store(checked, doc_id, owner, chat_id, parsed, emit, cancel)
            unit = {"pptx": "slide", "xlsx": "sheet"}.get(checked.kind, "page")
            pages_text = f"{parsed.pages} {unit}{'s' if parsed.pages != 1 else ''}, " if parsed.pages else ""
            message = f"“{name}” added: {pages_text}{len(chunks)} passage{'s' if len(chunks) != 1 else ''}."
            await emit(
                "done",
                pages_done=parsed.pages,
                pages_total=parsed.pages,
                chunks_done=len(chunks),
                chunks_total=len(chunks),
                message=message,
            )
            return IngestResult(
                name, "ingested", message, doc_id, parsed.pages, len(chunks), time.perf_counter() - started
            )
        except Cancelled:
            await emit("cancelled")
            return IngestResult(
                name,
                "cancelled",
                f"“{name}” was not added: upload cancelled.",
                seconds=time.perf_counter() - started,
            )
        except TimeoutError:
            self.pool.restart()
            return await failed(
                f"“{name}” took longer than {self.settings.rag.parse_timeout:g} s to read and was skipped."
            )
        except DocumentRejected as exc:
            return await failed(str(exc))
        except EmbeddingError as exc:
            return await failed(f"“{name}” could not be indexed: {exc}")
        except EnsembleError as exc:
            return await failed(str(exc))
        except Exception as exc:
            log.exception("ingesting %s failed", name)
            return await failed(f"“{name}” could not be added because of an internal error ({type(exc).__name__}).")

    async def parse(self, file: UploadedFile) -> ParsedDocument:
        """Check, parse and chunk one file without embedding or storing it (previews, benchmarks)."""
        name = Path(str(file.name)).name or "unnamed file"
        checked = await asyncio.to_thread(check_file, file.path, name, max_bytes=self.settings.uploads.max_bytes,
                                          max_unzipped_bytes=self.settings.rag.max_unzipped_bytes)

        async def ignore(stage: Stage, **counts: Any) -> None:
            return None

        return await self._parse(checked, ignore, None)

    async def _reuse_duplicate(self, checked: CheckedFile, owner: str, chat_id: str) -> IngestResult | None:
        """Same bytes already stored for this owner: nothing to embed again."""
        owner_key, chat_key = key_of(owner), key_of(chat_id)
        first = await asyncio.to_thread(
            self.store.query,
            scope_filter(owner_key, doc_hash=checked.sha256, first_chunk=True),
            ["doc_id", "chat_key", "file_name", "doc_pages", "doc_chunks"],
        )
        if not first:
            return None
        here = [row for row in first if row["chat_key"] == chat_key]
        if here:
            row = here[0]
            message = (
                f"“{checked.name}” is already in this chat (as “{row['file_name']}”); it was not added again."
            )
            return IngestResult(
                checked.name, "duplicate", message, row["doc_id"], row["doc_pages"], row["doc_chunks"]
            )
        source = first[0]
        rows = await asyncio.to_thread(
            self.store.query,
            scope_filter(owner_key, doc_id=source["doc_id"]),
            [*COPIED_FIELDS, "dense"],
        )
        doc_id = uuid.uuid4().hex
        uploaded = now()
        copies = [
            {
                **{k: row[k] for k in COPIED_FIELDS},
                "dense": [float(x) for x in row["dense"]],
                "id": f"{doc_id}-{row['chunk_index']:06d}",
                "doc_id": doc_id,
                "owner_key": owner_key,
                "chat_key": chat_key,
                "owner": owner,
                "chat_id": chat_id,
                "file_name": checked.name,
                "doc_hash": checked.sha256,
                "uploaded_at": uploaded,
            }
            for row in rows
        ]
        await self._store(copies, owner, doc_id)
        message = (
            f"“{checked.name}” was already in your documents (“{source['file_name']}”); it is now "
            f"available in this chat too, without being processed again."
        )
        return IngestResult(checked.name, "duplicate", message, doc_id, source["doc_pages"], len(copies))

    async def _parse(self, checked: CheckedFile, emit: Any, cancel: asyncio.Event | None) -> ParsedDocument:
        async with asyncio.timeout(self.settings.rag.parse_timeout):
            if checked.kind != "pdf":
                await emit("parsing")
                task = self.pool.submit(
                    parsing.parse_file, str(checked.path), checked.name, checked.kind, self._options
                )
                return await self._await_cancellable(task, checked.name, cancel)
            return await self._parse_pdf(checked, emit, cancel)

    async def _parse_pdf(
        self, checked: CheckedFile, emit: Any, cancel: asyncio.Event | None
    ) -> ParsedDocument:
        path, name = str(checked.path), checked.name
        pages = await self.pool.run(
            parsing.pdf_page_count, path, name, self.settings.rag.max_pages, name=name
        )
        await emit("parsing", pages_total=pages)
        step = self.settings.rag.pdf_batch_pages
        tasks = [
            self.pool.submit(parsing.parse_pdf_pages, path, name, start, min(start + step, pages))
            for start in range(0, pages, step)
        ]
        raw: list[parsing.RawElement] = []
        done = 0
        try:
            for index, task in enumerate(tasks):
                raw.extend(await self._await_cancellable(task, name, cancel))
                done = min((index + 1) * step, pages)
                await emit("parsing", pages_done=done, pages_total=pages)
        finally:
            for task in tasks:
                task.cancel()
        if not raw:
            raise DocumentRejected(_no_text(checked))
        chunks = await self.pool.run(parsing.chunk_raw, raw, name, self._options, name=name)
        return ParsedDocument(chunks=chunks, pages=pages)

    async def _await_cancellable(
        self, task: asyncio.Future[Any], name: str, cancel: asyncio.Event | None
    ) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        try:
            if cancel is None:
                return await task
            waiter = asyncio.ensure_future(cancel.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not task.done():
                task.cancel()
                raise Cancelled
            return task.result()
        except BrokenProcessPool as exc:
            self.pool.restart()
            raise DocumentRejected(f"The parser crashed on “{name}”; the file may be damaged.") from exc

    async def _embed_and_store(
        self,
        checked: CheckedFile,
        doc_id: str,
        owner: str,
        chat_id: str,
        parsed: ParsedDocument,
        emit: Any,
        cancel: asyncio.Event | None,
    ) -> None:
        """Embed the passages batch by batch, inserting each batch while the next is embedded.

        All rows of the document or none: a failure or cancellation deletes what was inserted.
        """
        chunks, pages = parsed.chunks, parsed.pages
        texts = [_embedding_text(chunk) for chunk in chunks]
        budget = self.settings.rag.local_embed_budget
        if budget and isinstance(self.embedder, LocalEmbedder) and sum(map(len, texts)) > budget:
            texts = [_opening(text, max(MIN_EMBEDDED_CHARS, budget // len(texts))) for text in texts]
        pending: asyncio.Future[None] | None = None
        await emit("embedding", pages_done=pages, pages_total=pages, chunks_total=len(chunks))
        try:
            for start in range(0, len(texts), EMBED_BATCH):
                _raise_if_cancelled(cancel)
                batch = chunks[start : start + EMBED_BATCH]
                vectors = await self.embedder.embed(texts[start : start + EMBED_BATCH])
                if len(vectors) != len(batch) or any(len(v) != self.store.dimension for v in vectors):
                    raise EmbeddingError(
                        "the embedding model returned vectors of the wrong size "
                        f"(expected {self.store.dimension})."
                    )
                rows = self._rows(checked, doc_id, owner, chat_id, parsed, batch, vectors)
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(self.store.insert, rows, flush=False))
                await emit("embedding", pages_done=pages, pages_total=pages,
                           chunks_done=start + len(batch), chunks_total=len(chunks))
            await emit("storing", pages_done=pages, pages_total=pages, chunks_done=len(chunks),
                       chunks_total=len(chunks))
            if pending is not None:
                await pending
            _raise_if_cancelled(cancel)
            await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(self.store.flush)))
        except BaseException:
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending
            await asyncio.to_thread(self.store.delete, scope_filter(key_of(owner), doc_id=doc_id))
            raise

    def _rows(
        self,
        checked: CheckedFile,
        doc_id: str,
        owner: str,
        chat_id: str,
        parsed: ParsedDocument,
        chunks: Sequence[Chunk],
        vectors: list[list[float]],
    ) -> list[dict[str, Any]]:
        import hashlib

        owner_key, chat_key, uploaded = key_of(owner), key_of(chat_id), now()
        return [
            {
                "id": f"{doc_id}-{chunk.index:06d}",
                "doc_id": doc_id,
                "owner_key": owner_key,
                "chat_key": chat_key,
                "owner": owner,
                "chat_id": chat_id,
                "file_name": checked.name,
                "page": chunk.page or 0,
                "page_end": chunk.page_end or chunk.page or 0,
                "section": chunk.section,
                "element_type": chunk.element_type,
                "content_hash": hashlib.sha256(chunk.text.encode("utf-8")).hexdigest(),
                "doc_hash": checked.sha256,
                "uploaded_at": uploaded,
                "chunk_index": chunk.index,
                "doc_pages": parsed.pages,
                "doc_chunks": len(parsed.chunks),
                "text": chunk.text,
                "dense": vector,
            }
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]

    async def _store(self, rows: list[dict[str, Any]], owner: str, doc_id: str) -> None:
        """Insert all rows of one document or none: a failure or cancellation removes a partial insert."""
        insert = asyncio.ensure_future(asyncio.to_thread(self.store.insert, rows))
        try:
            await asyncio.shield(insert)
        except BaseException:
            with contextlib.suppress(BaseException):
                await insert
            await asyncio.to_thread(self.store.delete, scope_filter(key_of(owner), doc_id=doc_id))
            raise

    # ------------------------------------------------------------------------------------ search

    async def search(
        self,
        query: str,
        owner: str,
        chat_id: str | None = None,
        k: int | None = None,
        mode: Literal["hybrid", "dense"] = "hybrid",
    ) -> list[SearchHit]:
        """The `k` best passages for `query` in `owner`'s documents of chat `chat_id` (None: all chats)."""
        _check_id(owner, "owner")
        if chat_id is not None:
            _check_id(chat_id, "chat_id")
        query = " ".join(query.split())
        if not query:
            return []
        k = k or self.settings.rag.top_k
        owner_key = key_of(owner)
        chat_key = None if chat_id is None else key_of(chat_id)
        vector = (await self.embedder.embed([self.settings.rag.query_prefix + query]))[0]
        named = await self._named_documents(query, owner, chat_id)
        where = scope_filter(owner_key, chat_key=chat_key)
        if named:  # one retrieval per named document, interleaved by rank; the rest of the top from all
            per_document = k if len(named) == 1 else max(2, -(-k // len(named)))
            lists = [
                await self._retrieve(scope_filter(owner_key, chat_key=chat_key, doc_id=doc_id), query, vector,
                                     per_document, mode)
                for doc_id in named[:k]
            ]
            hits = _interleave(lists, k)
            if len(hits) < k:
                seen = {(h.doc_id, h.chunk_index) for h in hits}
                more = await self._retrieve(where, query, vector, k * 2, mode)
                hits += [h for h in more if (h.doc_id, h.chunk_index) not in seen][: k - len(hits)]
            return hits
        if not named and SEVERAL_DOCUMENTS.search(query):  # "compare", "both", ...: one passage per document first
            return _diversified(await self._retrieve(where, query, vector, max(k * 4, 20), mode), k)
        return (await self._retrieve(where, query, vector, k, mode))[:k]

    async def _retrieve(
        self, where: str, query: str, vector: list[float], k: int, mode: Literal["hybrid", "dense"]
    ) -> list[SearchHit]:
        candidates = max(self.settings.rag.candidates, k)
        wanted = candidates if self.reranker is not None else k
        if mode == "dense":
            found = await asyncio.to_thread(self.store.dense, where, vector, wanted)
        else:
            found = await asyncio.to_thread(self.store.hybrid, where, query, vector, wanted, candidates)
        hits = [_hit(h) for h in found]
        if self.reranker is not None and len(hits) > 1:
            try:
                order = await self.reranker.rerank(query, [h.text for h in hits])
                hits = [_rescored(hits[i], score) for i, score in order]
            except EmbeddingError as exc:
                log.warning("reranking skipped: %s", exc)
        return hits[:k]

    async def _named_documents(self, query: str, owner: str, chat_id: str | None) -> list[str]:
        """Ids of the documents in scope whose file name the question uses (e.g. "the GPL" for gpl-3.0.pdf)."""
        words = set(re.findall(r"[a-z0-9]+", query.lower()))
        if not words:
            return []
        named = []
        for doc in await self.list_documents(owner, chat_id):
            tokens = name_tokens(doc.file_name)
            if tokens and tokens & words and doc.doc_id not in named:
                named.append(doc.doc_id)
        return named

    # ---------------------------------------------------------------------------------- manage

    async def list_documents(self, owner: str, chat_id: str | None = None) -> list[DocumentInfo]:
        """`owner`'s documents (in one chat, or all), newest first."""
        _check_id(owner, "owner")
        where = scope_filter(
            key_of(owner), chat_key=None if chat_id is None else key_of(chat_id), first_chunk=True
        )
        rows = await asyncio.to_thread(
            self.store.query,
            where,
            ["doc_id", "file_name", "chat_id", "doc_pages", "doc_chunks", "doc_hash", "uploaded_at"],
        )
        docs = [
            DocumentInfo(
                doc_id=r["doc_id"],
                file_name=r["file_name"],
                chat_id=r["chat_id"],
                pages=r["doc_pages"],
                chunks=r["doc_chunks"],
                content_hash=r["doc_hash"],
                uploaded_at=datetime.fromtimestamp(r["uploaded_at"], UTC),
                embedding_model=self.store.model_name,
            )
            for r in rows
        ]
        return sorted(docs, key=lambda d: (d.uploaded_at, d.file_name), reverse=True)

    async def has_documents(self, owner: str) -> bool:
        """Whether `owner` has any document: asked of the store at most once per `HAS_DOCUMENTS_SECONDS`
        (this process's uploads and deletions refresh it at once; another replica's show within that time),
        and never of a deferred store that nobody has uploaded to."""
        if not self.store.is_open:
            return False
        now = time.monotonic()
        known = self._has_documents.get(owner)
        if known is not None and now - known[1] < HAS_DOCUMENTS_SECONDS:
            return known[0]
        found = bool(await self.list_documents(owner))
        self._has_documents[owner] = (found, now)
        if len(self._has_documents) > HAS_DOCUMENTS_OWNERS:
            self._has_documents.pop(next(iter(self._has_documents)))
        return found

    async def delete_document(self, owner: str, doc_id: str) -> bool:
        """Remove one of `owner`'s documents with all its chunks; False if `owner` has no such document."""
        _check_id(owner, "owner")
        if not DOC_ID.fullmatch(doc_id):
            return False
        removed = await asyncio.to_thread(self.store.delete, scope_filter(key_of(owner), doc_id=doc_id))
        self._has_documents.pop(owner, None)
        return removed > 0

    async def delete_chat(self, owner: str, chat_id: str) -> int:
        """Remove every document `owner` uploaded in chat `chat_id`; returns how many documents went."""
        _check_id(owner, "owner")
        _check_id(chat_id, "chat_id")
        owner_key, chat_key = key_of(owner), key_of(chat_id)
        docs = await asyncio.to_thread(
            self.store.count, scope_filter(owner_key, chat_key=chat_key, first_chunk=True)
        )
        await asyncio.to_thread(self.store.delete, scope_filter(owner_key, chat_key=chat_key))
        self._has_documents.pop(owner, None)
        return docs

    async def aclose(self) -> None:
        self.pool.close()
        await self.embedder.aclose()
        await asyncio.to_thread(self.store.close)
        if self._http is not None:
            await self._http.aclose()


async def start(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    warm: bool = True,
    background_store: bool = False,
) -> DocumentService:
    """Build the documents feature: embedder, Milvus store (checked against the model), parser pool.

    Raises `DocumentsUnavailable` or `EmbeddingMismatch` (both `EnsembleError`s with a readable message).
    With `background_store` the store opens in a thread and those errors come from the first call instead
    (the app's startup then never waits seconds for Milvus Lite).
    """
    from rag.runtime import configure_libraries

    configure_libraries()
    own_http = http is None
    client = http or httpx.AsyncClient()
    try:
        try:
            embedder = await build_embedder(settings.embeddings, client, settings.model_cache)
        except EnsembleError as exc:
            raise DocumentsUnavailable(f"Documents are unavailable: {exc}") from exc
        uri = milvus_uri(settings)
        lite_file_absent = False
        if settings.rag.milvus_uri is None:  # a Milvus Lite file in the data dir
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            lite_file_absent = not await asyncio.to_thread(Path(uri).exists)
        try:
            opener = MilvusStore.opening if background_store else MilvusStore.open
            if background_store and lite_file_absent:  # nobody has uploaded yet: open on the first upload
                opener = MilvusStore.deferred
            store = await asyncio.to_thread(
                opener,
                uri,
                settings.rag.collection,
                embedder.model_name,
                embedder.dimension,
                settings.rag.milvus_token.get_secret_value(),
            )
        except EmbeddingMismatch:
            raise
        except Exception as exc:
            raise DocumentsUnavailable(
                f"Documents are unavailable: the Milvus store at {uri} could not be "
                f"opened ({type(exc).__name__}: {exc})."
            ) from exc
    except BaseException:
        if own_http:
            await client.aclose()
        raise
    reranker = TEIReranker(client, settings.rag.rerank) if settings.rag.rerank.configured else None
    service = DocumentService(settings, store, embedder, reranker=reranker, http=client if own_http else None)
    if warm:
        for future in service.pool.warm():
            # a warm-up cut short by shutdown is of no interest: retrieve its error so it is not logged
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return service


# -------------------------------------------------------------------------------------- helpers


async def _emit(callback: ProgressCallback | None, progress: IngestProgress) -> None:
    if callback is None:
        return
    try:
        result = callback(progress)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a broken progress display must not break the upload
        log.exception("progress callback failed")


def _raise_if_cancelled(cancel: asyncio.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise ValueError(f"{what} must be a non-empty string of at most {MAX_ID_CHARS} characters")


def _no_text(checked: CheckedFile) -> str:
    if checked.kind == "pdf":
        return (
            f"“{checked.name}” has no text layer (it may be scanned images); reading scanned pages "
            "needs OCR, which is not enabled."
        )
    return f"“{checked.name}” contains no text to index."


def _embedding_text(chunk: Chunk) -> str:
    """The passage, headed by its section title when the passage does not already start with it."""
    if chunk.section and not chunk.text.startswith(chunk.section[:60]):
        return f"{chunk.section}\n\n{chunk.text}"
    return chunk.text


GENERIC_NAME_WORDS = frozenset({
    "the", "and", "for", "with", "from", "license", "licence", "document", "documents", "file", "files",
    "report", "notes", "final", "draft", "copy", "version", "pdf", "docx", "doc", "pptx", "xlsx", "csv",
    "tsv", "html", "htm", "md", "txt", "eml", "text", "new", "old", "part",
})
SEVERAL_DOCUMENTS = re.compile(
    r"\b(compare|comparison|contrast|differ|differs|difference|differences|both|versus|vs|each of|"
    r"(all|across|among) (of )?(the|my|these) (documents|files|licen[cs]es|reports))\b",
    re.I,
)


def name_tokens(file_name: str) -> set[str]:
    """The distinctive words of a file name ("gpl-3.0.pdf" -> {"gpl"}), by which a question names it."""
    stem = Path(file_name).stem.lower()
    return {
        t for t in re.findall(r"[a-z0-9]+", stem)
        if len(t) >= 3 and not t.isdigit() and t not in GENERIC_NAME_WORDS
    }


def _interleave(lists: list[list[SearchHit]], k: int) -> list[SearchHit]:
    """Rank 1 of each list, then rank 2 of each, ... (each named document is represented)."""
    out: list[SearchHit] = []
    for rank in range(max((len(hits) for hits in lists), default=0)):
        for hits in lists:
            if rank < len(hits) and len(out) < k:
                out.append(hits[rank])
    return out


def _diversified(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """The best passage of each document first (in rank order), then the remaining by rank."""
    firsts: list[SearchHit] = []
    seen: set[str] = set()
    for hit in hits:
        if hit.doc_id not in seen:
            seen.add(hit.doc_id)
            firsts.append(hit)
    rest = [h for h in hits if h not in firsts]
    return (firsts[:k] + rest)[:k]


def _opening(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, cut between words."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit]


def _hit(hit: StoredHit) -> SearchHit:
    e = hit.entity
    page = int(e.get("page") or 0) or None
    return SearchHit(
        doc_id=e["doc_id"],
        file_name=e["file_name"],
        chat_id=e["chat_id"],
        page=page,
        page_end=int(e.get("page_end") or 0) or page,
        section=e.get("section") or "",
        element_type=e.get("element_type") or "",
        text=e.get("text") or "",
        score=hit.score,
        chunk_index=int(e.get("chunk_index") or 0),
    )


def _rescored(hit: SearchHit, score: float) -> SearchHit:
    from dataclasses import replace

    return replace(hit, score=score)
