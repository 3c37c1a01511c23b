"""Builds the memory service at startup: picks the store from settings and decides on semantic recall.

- Default: LangGraph's `SqliteStore` in `data_dir/memory.sqlite`, each call one hand-off to its own thread
  (core/sqlite_threads.py); with a sqlite-vec index (where Python's sqlite3 can load extensions), its
  `AsyncSqliteStore`, whose index embeds through the async embedder.
- `postgresql://…` (ENSEMBLE_MEMORY__URL, or ENSEMBLE_DATABASE_URL when that is PostgreSQL; see core.databases):
  `AsyncPostgresStore`, with a pgvector index when the server has pgvector.
- Without a vector index, each memory keeps its embedding and a user's memories (at most
  `max_per_user`) are compared in process ("scan"); without an embedding model (or `vector=off`),
  recall ranks by shared keywords, then recency. The choice is logged once at startup.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
from langgraph.store.base import BaseStore

from core.databases import StoreLocation, memory_location
from core.embeddings import Embedder
from core.settings import MemorySettings, Settings
from memory.embeddings import EmbedderUnavailable, LangChainEmbeddings, local_embedder
from memory.service import MemoryService, RecallMode

log = logging.getLogger(__name__)


class MemoryUnavailable(RuntimeError):
    """The memory store cannot be opened as configured."""


async def open_memory_service(
    settings: Settings, *, embedder: Embedder | None = None
) -> MemoryService | None:
    """The memory service for this deployment, or None when memory is switched off.

    `embedder` replaces the local model (e.g. the RAG room's embedder); it is only loaded when a
    vector index can be used. Call `aclose()` on the result at shutdown.
    """
    config = settings.memory
    if not config.enabled:
        log.info("memory: switched off (ENSEMBLE_MEMORY__ENABLED=false)")
        return None
    try:
        location = memory_location(settings)
    except ValueError as exc:
        raise MemoryUnavailable(str(exc)) from exc
    stack = AsyncExitStack()
    try:
        service = await _open(location, config, embedder, stack, settings)
    except BaseException:
        await stack.aclose()
        raise
    log.info("memory: %s at %s", service.description, location)
    return service


async def _open(
    location: StoreLocation,
    config: MemorySettings,
    embedder: Embedder | None,
    stack: AsyncExitStack,
    settings: Settings,
) -> MemoryService:
    mode = await _recall_mode(location, config)
    if mode != "keyword" and embedder is None:
        try:
            embedder = await local_embedder(settings)
            stack.push_async_callback(embedder.aclose)  # its own: a shared one is closed by its owner
        except (EmbedderUnavailable, OSError) as exc:
            if config.vector in ("index", "scan"):
                wanted = f"memory.vector={config.vector}"
                raise MemoryUnavailable(f"{wanted} needs an embedding model: {exc}") from exc
            log.warning("memory: no embedding model (%s); recall falls back to keywords and recency", exc)
            mode = "keyword"
    index = None
    if mode == "index" and embedder is not None:
        # Only the memory's text is embedded. The SQLite store reads `text_fields` (and would embed the
        # whole JSON value without it); the PostgreSQL store reads `fields`.
        index = {
            "dims": embedder.dimension,
            "embed": LangChainEmbeddings(embedder),
            "fields": ["text"],
            "text_fields": ["text"],
        }

    if location.backend == "sqlite":
        if location.target != ":memory:":
            Path(location.target).parent.mkdir(parents=True, exist_ok=True)
        store: BaseStore
        if index is None:
            from core.sqlite_threads import sqlite_store

            # LangGraph's SqliteStore, each call one hand-off to its own thread (not one per statement)
            store = await stack.enter_async_context(sqlite_store(location.target))
        else:
            # the sqlite-vec index embeds inside the store's calls, through the async embedder: the aio store
            from langgraph.store.sqlite.aio import AsyncSqliteStore

            aio_store = await stack.enter_async_context(
                AsyncSqliteStore.from_conn_string(location.target, index=index)  # type: ignore[arg-type]
            )
            await aio_store.conn.execute("PRAGMA busy_timeout = 5000")
            if location.target != ":memory:":
                await aio_store.conn.execute("PRAGMA journal_mode = WAL")
            await aio_store.setup()
            store = aio_store
    else:
        from langgraph.store.postgres.aio import AsyncPostgresStore

        try:
            pg_store = await stack.enter_async_context(
                AsyncPostgresStore.from_conn_string(
                    location.target,
                    pool_config={"min_size": 1, "max_size": config.pool_max_size},
                    index=index,  # type: ignore[arg-type]
                )
            )
            await pg_store.setup()
        except psycopg.Error as exc:
            raise MemoryUnavailable(f"cannot open the memory store at {location}: {exc}") from exc
        store = pg_store
    service = MemoryService(
        store, config, backend=location.backend, mode=mode, embedder=embedder, stack=stack
    )
    service.start_reindex()  # memories stored before this mode or model get embedded, in the background
    return service


async def _recall_mode(location: StoreLocation, config: MemorySettings) -> RecallMode:
    """The recall mode the settings ask for and the backend allows (the embedder is checked later)."""
    if config.vector == "off":
        return "keyword"
    if config.vector == "scan":
        return "scan"
    if location.backend == "sqlite":
        ok = hasattr(sqlite3.Connection, "enable_load_extension")
        reason = "this Python's sqlite3 cannot load extensions (sqlite-vec)"
    else:
        ok, reason = await pgvector_available(location.target)
    if ok:
        return "index"
    if config.vector == "index":
        raise MemoryUnavailable(f"memory.vector=index but {reason}")
    # On a laptop (SQLite) comparing a user's few hundred memories in process is the designed path; on
    # PostgreSQL a missing pgvector is worth an operator's attention.
    level = logging.INFO if location.backend == "sqlite" else logging.WARNING
    log.log(level, "memory: no vector index because %s; embeddings are compared in process instead", reason)
    return "scan"


async def pgvector_available(conninfo: str) -> tuple[bool, str]:
    """Whether the `vector` extension is (or can be) installed in this database, and if not, why."""
    try:
        connect = psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=10)
        async with await connect as conn:
            cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
            if await cur.fetchone() is not None:
                return True, ""
            cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if await cur.fetchone() is None:
                return False, "the PostgreSQL server has no pgvector extension"
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                return False, f"pgvector is available but could not be enabled ({exc.sqlstate}: {exc})"
            return True, ""
    except psycopg.Error as exc:
        raise MemoryUnavailable(f"cannot reach the memory store's PostgreSQL: {exc}") from exc
