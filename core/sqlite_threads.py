"""LangGraph's SQLite checkpointer and store, each call one hand-off to a thread of their own.

LangGraph's async SQLite classes run on aiosqlite, which hands every statement, fetch and commit to
its thread and wakes the event loop for each; a turn's checkpoint read and write were ~10 such
hand-offs, the memory store's search a few more (issue 19's profile: the event loop's wake-ups cost
more than the SQL). These subclasses of the sync classes run each whole call (`get_tuple`, `put`,
`batch`...) in one single-threaded executor instead: one wake-up per call, calls kept in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.store.base import Op, Result
from langgraph.store.sqlite import SqliteStore

T = TypeVar("T")


def connect(path: str, *, autocommit: bool) -> sqlite3.Connection:
    """A connection any thread may use (only the executor's one does), WAL without an fsync per commit;
    `autocommit` as LangGraph's own `from_conn_string` opens it (the store: yes; the checkpointer: no;
    the chat history's writer, which begins its own transactions: yes)."""
    level: Literal["DEFERRED"] | None = None if autocommit else "DEFERRED"  # "DEFERRED": sqlite3's default
    connection = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=level)
    connection.execute("PRAGMA busy_timeout = 30000")
    if path != ":memory:":
        connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


class OneThread:
    """A single worker thread that runs calls in the order they came."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class ThreadedSqliteSaver(SqliteSaver):
    """`SqliteSaver` with the async API LangGraph's graphs call, each call one hand-off to its thread."""

    def __init__(self, conn: sqlite3.Connection, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(conn, serde=serde)
        self._thread = OneThread("checkpoints")

    async def asetup(self) -> None:
        await self._thread.run(self.setup)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._thread.run(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        found = await self._thread.run(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._thread.run(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._thread.run(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._thread.run(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return await self._thread.run(lambda: self.get_delta_channel_history(*args, **kwargs))

    def close(self) -> None:
        self._thread.shutdown()
        self.conn.close()


@asynccontextmanager
async def sqlite_checkpointer(path: Path, serde: SerializerProtocol) -> AsyncIterator[ThreadedSqliteSaver]:
    """The chats' checkpoints in the SQLite file `path` (tables created if missing)."""
    saver = ThreadedSqliteSaver(await asyncio.to_thread(lambda: connect(str(path), autocommit=False)), serde=serde)
    try:
        await saver.asetup()
        yield saver
    finally:
        await asyncio.to_thread(saver.close)


class ThreadedSqliteStore(SqliteStore):
    """`SqliteStore` with `abatch` (every async store call goes through it) one hand-off to its thread."""

    def __init__(self, conn: sqlite3.Connection, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        self._thread = OneThread("memory-store")

    async def asetup(self) -> None:
        await self._thread.run(self.setup)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self._thread.run(self.batch, list(ops))

    def close(self) -> None:
        self._thread.shutdown()
        self.conn.close()


@asynccontextmanager
async def sqlite_store(path: str, **kwargs: Any) -> AsyncIterator[ThreadedSqliteStore]:
    """LangGraph's store in the SQLite file `path` (or ":memory:"), set up."""
    store = ThreadedSqliteStore(await asyncio.to_thread(lambda: connect(path, autocommit=True)), **kwargs)
    try:
        await store.asetup()
        yield store
    finally:
        await asyncio.to_thread(store.close)
