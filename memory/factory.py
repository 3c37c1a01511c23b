"""Builds the memory service at startup: picks the store from settings and decides on semantic recall.

- Default: LangGraph's `AsyncSqliteStore` in `data_dir/memory.sqlite` (sqlite-vec index where Python's
  sqlite3 can load extensions).
- `postgresql://…` (ENSEMBLE_MEMORY__URL, or ENSEMBLE_DATABASE_URL when that is PostgreSQL):
  `AsyncPostgresStore`, with a pgvector index when the server has pgvector.
- Without a vector index, each memory keeps its embedding and a user's memories (at most
  `max_per_user`) are compared in process ("scan"); without an embedding model (or `vector=off`),
  recall ranks by shared keywords, then recency. The choice is logged once at startup.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import psycopg
from langgraph.store.base import BaseStore

from core.settings import MemorySettings, Settings
from memory.embeddings import Embedder, EmbedderUnavailable, LangChainEmbeddings, local_embedder
from memory.service import MemoryService, RecallMode

log = logging.getLogger(__name__)


class MemoryUnavailable(RuntimeError):
    """The memory store cannot be opened as configured."""


@dataclass(frozen=True)
class StoreLocation:
    """Where the memory store lives: a SQLite file (or `:memory:`) or a PostgreSQL conninfo URL."""

    backend: Literal["sqlite", "postgres"]
    target: str

    def __str__(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:{self.target}"
        parts = urlsplit(self.target)
        host = parts.hostname or "local socket"
        return f"postgres:{host}{parts.path}"


def store_location(settings: Settings) -> StoreLocation:
    """The store the settings name: `memory.url`, else a PostgreSQL `database_url`, else a SQLite file."""
    if settings.memory.url is not None:
        return parse_store_url(settings.memory.url.get_secret_value())
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        if _scheme(url).startswith("postgres"):
            return parse_store_url(url)
    return StoreLocation("sqlite", str(settings.data_dir / "memory.sqlite"))


def parse_store_url(url: str) -> StoreLocation:
    """`postgresql[+driver]://…` or `sqlite[+driver]:///path` (`sqlite://` alone: in memory)."""
    scheme = _scheme(url)
    if scheme.startswith("postgres"):
        return StoreLocation("postgres", "postgresql" + url[len(scheme):])
    if scheme.startswith("sqlite"):
        rest = url[len(scheme) + 3 :] if url[len(scheme):].startswith("://") else ""
        path = unquote(rest[1:] if rest.startswith("/") else rest)
        return StoreLocation("sqlite", path or ":memory:")
    raise MemoryUnavailable(f"unsupported memory store URL scheme {scheme!r}: use postgresql:// or sqlite:///")


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower()


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
    location = store_location(settings)
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
            close = getattr(embedder, "aclose", None)
            if close is not None:
                stack.push_async_callback(close)
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
            "dims": embedder.dims,
            "embed": LangChainEmbeddings(embedder),
            "fields": ["text"],
            "text_fields": ["text"],
        }

    if location.backend == "sqlite":
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        if location.target != ":memory:":
            Path(location.target).parent.mkdir(parents=True, exist_ok=True)
        sqlite_store = await stack.enter_async_context(
            AsyncSqliteStore.from_conn_string(location.target, index=index)  # type: ignore[arg-type]
        )
        await sqlite_store.conn.execute("PRAGMA busy_timeout = 5000")
        if location.target != ":memory:":
            await sqlite_store.conn.execute("PRAGMA journal_mode = WAL")
        await sqlite_store.setup()
        store: BaseStore = sqlite_store
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
