"""Chat history for the sidebar: Chainlit's SQLAlchemy data layer on SQLite (default) or PostgreSQL.

Chainlit does not create its tables, so `ensure_schema` does (idempotently) at startup and in the
deployment's migration job. Elements (uploaded and generated images, files) are kept by a small
local storage client under the data dir, each under its owner (`<user id>/<element id>/<name>`),
and served back to that owner only at `/files/...` (chainlit_app/files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainlit.context import context_var
from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient
from chainlit.data.utils import queue_until_user_message
from chainlit.user import PersistedUser
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.outbound import OutboundRefused, vet_url
from core.sqlite_threads import OneThread, connect

if TYPE_CHECKING:
    from chainlit.element import Element
    from chainlit.session import WebsocketSession
    from chainlit.step import StepDict

log = logging.getLogger(__name__)

FILES_ROUTE = "/files"
UNOWNED = "unknown"  # the owner Chainlit writes into a key when it cannot find the thread's author
# One segment of a storage key: a plain file name (no separators, no dot segments, no control characters).
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

# Chainlit 2.12's SQLAlchemy schema (docs.chainlit.io/data-layers/sqlalchemy), with the types each
# dialect needs: PostgreSQL keeps UUID/JSONB/TEXT[]; SQLite stores them as TEXT.
_TABLES = """
CREATE TABLE IF NOT EXISTS users (
    "id" {uuid} PRIMARY KEY, "identifier" TEXT NOT NULL UNIQUE, "metadata" {json} NOT NULL, "createdAt" TEXT
);
CREATE TABLE IF NOT EXISTS threads (
    "id" {uuid} PRIMARY KEY, "createdAt" TEXT, "name" TEXT, "userId" {uuid}, "userIdentifier" TEXT,
    "tags" {array}, "metadata" {json},
    FOREIGN KEY ("userId") REFERENCES users("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS steps (
    "id" {uuid} PRIMARY KEY, "name" TEXT NOT NULL, "type" TEXT NOT NULL, "threadId" {uuid} NOT NULL,
    "parentId" {uuid}, "streaming" BOOLEAN NOT NULL, "waitForAnswer" BOOLEAN, "isError" BOOLEAN,
    "metadata" {json}, "tags" {array}, "input" TEXT, "output" TEXT, "createdAt" TEXT, "command" TEXT,
    "start" TEXT, "end" TEXT, "generation" {json}, "showInput" TEXT, "language" TEXT, "indent" INT,
    "defaultOpen" BOOLEAN, "modes" {json}, "autoCollapse" BOOLEAN, "icon" TEXT,
    FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS elements (
    "id" {uuid} PRIMARY KEY, "threadId" {uuid}, "type" TEXT, "url" TEXT, "chainlitKey" TEXT, "name" TEXT NOT NULL,
    "display" TEXT, "objectKey" TEXT, "size" TEXT, "page" INT, "language" TEXT, "forId" {uuid}, "mime" TEXT,
    "props" {json}, "autoPlay" BOOLEAN, "playerConfig" {json},
    FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS feedbacks (
    "id" {uuid} PRIMARY KEY, "forId" {uuid} NOT NULL, "threadId" {uuid} NOT NULL, "value" INT NOT NULL,
    "comment" TEXT,
    FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE
)
"""
_TYPES = {
    "postgresql": {"uuid": "UUID", "json": "JSONB", "array": "TEXT[]"},
    "sqlite": {"uuid": "TEXT", "json": "TEXT", "array": "TEXT"},
}
_ARRAY_COLUMNS = {"tags", "thread_tags", "step_tags"}
KNOWN_THREADS = 10_000  # chats this process has seen stored, remembered to skip re-checking them per step
# Connections kept open: SQLAlchemy's default (5 + 10 overflow) closes every connection beyond 5 after
# one use, and 50 concurrent turns then opened a new one (an aiosqlite thread) for most writes.
HISTORY_POOL_SIZE = 20
# Steps (messages, the turn's steps) are written this long after they change, all sessions' together in one
# transaction; a step changed twice in that time is written once. An app crash loses at most this much.
STEP_WRITE_DELAY = 0.2


def history_engine(url: str) -> AsyncEngine:
    """The chat history's engine: SQLite without an fsync per commit (WAL; a crash of the app loses
    nothing, a power cut at most the last steps), no rollback when a connection goes back to the pool
    (every use of it ends its own transaction: `EnsembleDataLayer.execute_sql`), and a pool that keeps
    as many connections as concurrent turns write at once."""
    engine = create_async_engine(url, pool_reset_on_return=None, pool_size=HISTORY_POOL_SIZE, max_overflow=10)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


async def ensure_schema(url: str) -> None:
    """Create Chainlit's tables if they are missing (safe to run on every start); SQLite in WAL mode."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    engine = create_async_engine(url)
    try:
        if dialect == "sqlite":
            # write-ahead log: readers never wait for the writer, and a commit costs one append
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await auto.exec_driver_sql("PRAGMA journal_mode=WAL")
        async with engine.begin() as conn:
            for statement in _TABLES.format(**_TYPES[dialect]).split(";"):
                if statement.strip():
                    await conn.execute(text(statement))
    finally:
        await engine.dispose()


def plain_name(name: str) -> str:
    """A file name made only of safe characters (never a path)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    return cleaned[:120] or "file"


def valid_key(object_key: str) -> bool:
    """Whether `object_key` is `owner/element/name`, each a plain segment (no `..`, `/`, `\\`, NUL)."""
    parts = object_key.split("/")
    return len(parts) == 3 and all(_SEGMENT.fullmatch(p) for p in parts)


class LocalStorageClient(BaseStorageClient):
    """Element files on local disk under `<root>/<owner id>/<element id>/<name>`.

    Keys are checked before any file system call, and a path counts only if it resolves (symlinks
    followed) inside its owner's folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, object_key: str) -> Path | None:
        """The file behind a valid key, resolved; None if the key is malformed or leaves its owner's folder."""
        if not valid_key(object_key):
            return None
        owner = object_key.split("/", 1)[0]
        path = (self.root / object_key).resolve()
        return path if path.is_relative_to(self.root / owner) else None

    def owned_file(self, object_key: str, owner: str) -> Path | None:
        """The regular file behind `object_key` if it is `owner`'s, else None."""
        path = self.path_for(object_key)
        if path is None or object_key.split("/", 1)[0] != owner or not path.is_file():
            return None
        return path

    def canonical_key(self, object_key: str) -> str | None:
        """Chainlit's `<owner>/<element id>/<element name>` with the name made plain; None without an owner."""
        owner, _, rest = object_key.partition("/")
        element, _, name = rest.partition("/")
        key = f"{owner}/{element}/{plain_name(name)}"
        if owner == UNOWNED or not valid_key(key):
            return None
        return key

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        key = self.canonical_key(object_key)
        path = self.path_for(key) if key is not None else None
        if key is None or path is None:
            log.error("refusing to store an element under %r (no owner, or not a plain key)", object_key)
            return {}
        if path.exists() and not overwrite:
            return {"object_key": key, "url": await self.get_read_url(key)}
        payload = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(_write, path, payload)
        return {"object_key": key, "url": await self.get_read_url(key)}

    async def delete_file(self, object_key: str) -> bool:
        path = self.path_for(object_key)
        if path is None or not path.is_file():
            return False
        await asyncio.to_thread(_remove, path)
        return True

    async def move(self, old_key: str, new_key: str) -> bool:
        """Move a stored file to another key (adopting an unowned upload); False if there is none."""
        source, target = self.path_for(old_key), self.path_for(new_key)
        if source is None or target is None or not source.is_file():
            return False
        await asyncio.to_thread(_move, source, target)
        return True

    async def get_read_url(self, object_key: str) -> str:
        return f"{FILES_ROUTE}/{object_key}"

    async def close(self) -> None:
        return None

    def mime_of(self, path: Path) -> str:
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the element's folder, once empty


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source.replace(target)
    with contextlib.suppress(OSError):
        source.parent.rmdir()


def _session() -> WebsocketSession | None:
    """The socket session this call runs for (a socket event, or an HTTP route that set it up), if any."""
    from chainlit.session import WebsocketSession

    current = context_var.get(None)
    session = getattr(current, "session", None)
    return session if isinstance(session, WebsocketSession) else None


def step_upsert(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Chainlit's statement for storing a step (`SQLAlchemyDataLayer.create_step`): an upsert of the
    step's set columns."""
    step = dict(step)
    step["showInput"] = str(step.get("showInput", "")).lower() if "showInput" in step else None
    parameters = {k: v for k, v in step.items() if v is not None and not (isinstance(v, dict) and not v)}
    parameters["metadata"] = json.dumps(step.get("metadata", {}))
    parameters["generation"] = json.dumps(step.get("generation", {}))
    columns = ", ".join(f'"{key}"' for key in parameters)
    values = ", ".join(f":{key}" for key in parameters)
    updates = ", ".join(f'"{key}" = :{key}' for key in parameters if key != "id")
    query = f"INSERT INTO steps ({columns}) VALUES ({values}) ON CONFLICT (id) DO UPDATE SET {updates}"
    return query, parameters


def merged_step(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """What storing `old` then `new` leaves in the row: `new`'s set fields over `old`'s."""
    if old is None:
        return dict(new)
    return {**old, **{k: v for k, v in new.items() if v is not None and not (isinstance(v, dict) and not v)}}


class EnsembleDataLayer(SQLAlchemyDataLayer):
    """Chainlit's SQLAlchemy layer, with list columns stored as JSON text on SQLite.

    Cheaper per turn than Chainlit's own (a turn changes ~6 steps): steps are written behind, every
    `STEP_WRITE_DELAY`, all pending ones in one transaction (on SQLite, in one call to the writer thread);
    any other statement, and every read, first writes what is pending, so that reads see every step. A
    statement runs on a pooled connection in one transaction, without an ORM session around it; and a
    step of a chat this process already stored skips Chainlit's check that the chat exists.
    """

    def __init__(
        self,
        conninfo: str,
        storage: BaseStorageClient,
        *,
        on_delete_thread: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(conninfo=conninfo, storage_provider=storage)
        # Chainlit's own engine has not connected yet (nothing to close); its ORM sessions are not used.
        self.engine = history_engine(conninfo)
        self._sqlite = conninfo.startswith("sqlite")
        self._on_delete_thread = on_delete_thread
        self._known_threads: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, dict[str, Any]] = {}  # step id -> the step as it should be stored
        self._flush_lock = asyncio.Lock()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self._sqlite_writer: SqliteWriter | None = SqliteWriter(conninfo) if self._sqlite else None

    def _know_thread(self, thread_id: str) -> None:
        self._known_threads[thread_id] = None
        self._known_threads.move_to_end(thread_id)
        while len(self._known_threads) > KNOWN_THREADS:
            self._known_threads.popitem(last=False)

    # --- who owns what ------------------------------------------------------------------------------
    async def thread_user_id(self, thread_id: str) -> str | None:
        """The id (Chainlit's user table) of the chat's author, or None while the chat has none."""
        rows = await self.execute_sql('SELECT "userId" FROM threads WHERE "id" = :id', {"id": thread_id})
        if not isinstance(rows, list) or not rows or not rows[0].get("userId"):
            return None
        return str(rows[0]["userId"])

    async def get_thread_author(self, thread_id: str) -> str:
        """The chat author's login name; '' for an unknown chat (Chainlit then answers 404, not 500)."""
        try:
            return await super().get_thread_author(thread_id)
        except ValueError:
            return ""

    async def step_thread_id(self, step_id: str) -> str | None:
        """The chat a message (step) belongs to."""
        rows = await self.execute_sql('SELECT "threadId" FROM steps WHERE "id" = :id', {"id": step_id})
        return str(rows[0]["threadId"]) if isinstance(rows, list) and rows and rows[0]["threadId"] else None

    async def feedback_thread_id(self, feedback_id: str) -> str | None:
        """The chat a feedback belongs to."""
        rows = await self.execute_sql('SELECT "threadId" FROM feedbacks WHERE "id" = :id', {"id": feedback_id})
        return str(rows[0]["threadId"]) if isinstance(rows, list) and rows and rows[0]["threadId"] else None

    async def _may_write(self, thread_id: str | None, session: WebsocketSession) -> bool:
        """Whether `session`'s user may add to or remove from chat `thread_id` (its author, or its own new chat).

        A new chat of the session gets its author now, before its first element is stored: Chainlit
        sets it in a task that races with the elements' storage (which then filed them as `unknown`).
        """
        user = session.user
        if not isinstance(user, PersistedUser) or not thread_id:
            return False
        owner = await self.thread_user_id(thread_id)
        if owner is not None:
            return owner == user.id
        if thread_id != session.thread_id:
            return False
        if session.has_first_interaction:
            await self.update_thread(thread_id, user_id=user.id)
        return True

    async def create_element(self, element: Element) -> None:
        """Store an element under its chat's author; refused in another user's chat."""
        session = _session()
        if session is not None and session.user is not None and not await self._may_write(element.thread_id, session):
            log.warning("refused to add element %s to chat %s of another user", element.id, element.thread_id)
            return None
        if element.url and not element.path and element.content is None:
            try:  # Chainlit would fetch the URL from the server
                await vet_url(element.url)
            except OutboundRefused as exc:
                log.warning("refused to fetch element %s: %s", element.id, exc)
                return None
        await super().create_element(element)
        return None

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        """Delete an element of one of the caller's chats (found by its id, whatever chat is claimed)."""
        session = _session()
        if session is not None and session.user is not None:
            rows = await self.execute_sql('SELECT "threadId" FROM elements WHERE "id" = :id', {"id": element_id})
            actual = str(rows[0]["threadId"]) if isinstance(rows, list) and rows and rows[0]["threadId"] else None
            if actual is None or not await self._may_write(actual, session):
                log.warning("refused to delete element %s of another user's chat", element_id)
                return None
        await super().delete_element(element_id, thread_id)
        return None

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Chainlit's upsert, except that a chat's author, once set, never changes.

        Called with the id alone (Chainlit does so before every step it stores) it only makes sure the
        chat exists: for a chat this process stored or saw, that is known without asking the database.
        """
        if name is None and user_id is None and metadata is None and tags is None and thread_id in self._known_threads:
            return
        if user_id is not None:
            owner = await self.thread_user_id(thread_id)
            if owner is not None and owner != user_id:
                log.warning("refused to hand chat %s to another user", thread_id)
                user_id = None
        await super().update_thread(thread_id, name=name, user_id=user_id, metadata=metadata, tags=tags)
        self._know_thread(thread_id)

    async def adopt_unowned_files(self, storage: LocalStorageClient) -> int:
        """Move element files stored under `unknown/` (before owners were set in time) to their chat's author.

        Idempotent; run at startup. Returns how many files moved.
        """
        rows = await self.execute_sql(
            'SELECT e."id" AS id, e."objectKey" AS key, t."userId" AS owner FROM elements e '
            'JOIN threads t ON e."threadId" = t."id" WHERE e."objectKey" LIKE :unowned AND t."userId" IS NOT NULL',
            {"unowned": f"{UNOWNED}/%"},
        )
        moved = 0
        for row in rows if isinstance(rows, list) else []:
            key = storage.canonical_key(f"{row['owner']}/{str(row['key']).split('/', 1)[1]}")
            if key is None or not await storage.move(str(row["key"]), key):
                continue
            await self.execute_sql(
                'UPDATE elements SET "objectKey" = :key, "url" = :url WHERE "id" = :id',
                {"key": key, "url": await storage.get_read_url(key), "id": row["id"]},
            )
            moved += 1
        return moved

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the chat's history, then what the agent layer kept for it (checkpoints, documents)."""
        owner = await self.thread_owner_id(thread_id)
        self._known_threads.pop(thread_id, None)
        await super().delete_thread(thread_id)
        if self._on_delete_thread is not None and owner is not None:
            await self._on_delete_thread(thread_id, owner)

    async def thread_owner_id(self, thread_id: str) -> str | None:
        """The account id (not the login name) of the chat's author."""
        rows = await self.execute_sql(
            'SELECT u."metadata" AS metadata FROM threads t JOIN users u ON t."userId" = u."id" WHERE t."id" = :id',
            {"id": thread_id},
        )
        if not isinstance(rows, list) or not rows:
            return None
        metadata = rows[0]["metadata"]
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        owner = metadata.get("id") if isinstance(metadata, dict) else None
        return str(owner) if owner else None

    # --- steps, written behind ------------------------------------------------------------------------
    @queue_until_user_message()
    async def create_step(self, step_dict: StepDict) -> None:
        """Store a step `STEP_WRITE_DELAY` from now, with whatever else changed by then."""
        step = dict(step_dict)
        self._pending[str(step["id"])] = merged_step(self._pending.get(str(step["id"])), step)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(STEP_WRITE_DELAY, self._flush_later)

    @queue_until_user_message()
    async def update_step(self, step_dict: StepDict) -> None:
        await self.create_step(step_dict)

    def _flush_later(self) -> None:
        self._flush_timer = None
        task = asyncio.get_running_loop().create_task(self.flush_steps())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush_steps(self) -> None:
        """Write the pending steps now: their chats first (if new), then the steps, in one transaction; if
        that fails, each step on its own (one bad step never costs other users theirs)."""
        if not self._pending:
            return
        async with self._flush_lock:
            pending, self._pending = self._pending, {}
            if not pending:
                return
            token = _IN_FLUSH.set(True)
            try:
                for thread_id in dict.fromkeys(str(step["threadId"]) for step in pending.values()):
                    await self.update_thread(thread_id)
                statements = [step_upsert(step) for step in pending.values()]
                if not await self._write(statements):
                    for statement in statements:
                        await self._write([statement])
            finally:
                _IN_FLUSH.reset(token)

    async def _write(self, statements: list[tuple[str, dict[str, Any]]]) -> bool:
        """Run `statements` in one transaction; False (logged) if it failed."""
        if self._sqlite_writer is not None:
            try:
                await self._sqlite_writer.run([(q, _sqlite_parameters(p)) for q, p in statements])
            except Exception as exc:
                log.warning("chat history: %d step write(s) failed: %s", len(statements), exc)
                return False
            return True
        try:
            async with self.engine.begin() as conn:
                for query, parameters in statements:
                    await conn.execute(text(query), parameters)
        except Exception as exc:
            log.warning("chat history: %d step write(s) failed: %s", len(statements), exc)
            return False
        return True

    async def close(self) -> None:
        """Write what is pending, then close (Chainlit calls this at shutdown)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await self.flush_steps()
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()
        await super().close()

    async def execute_sql(self, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]] | int | None:
        """Chainlit's contract (rows as dicts, else the row count; None after a logged error), run on a
        pooled connection in one transaction, after the pending steps are written."""
        if not _IN_FLUSH.get():
            await self.flush_steps()
        if self._sqlite:
            parameters = _sqlite_parameters(parameters)
        result: list[dict[str, Any]] | int | None
        try:
            async with self.engine.begin() as conn:
                rows = await conn.execute(text(query), parameters)
                if rows.returns_rows:
                    result = self.clean_result([dict(row._mapping) for row in rows.fetchall()])
                else:
                    result = rows.rowcount
        except SQLAlchemyError as exc:
            log.warning("chat history: a statement failed: %s", exc)
            return None
        except Exception as exc:  # Chainlit's contract: a failed write is logged, never raised into the turn
            log.warning("chat history: unexpected error %s: %s", type(exc).__name__, exc)
            return None
        if self._sqlite and isinstance(result, list):
            for row in result:
                for column in _ARRAY_COLUMNS & row.keys():
                    if isinstance(row[column], str):
                        row[column] = json.loads(row[column])
        return result


_IN_FLUSH: ContextVar[bool] = ContextVar("ensemble_history_flush", default=False)


def _sqlite_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """List values as JSON text (SQLite has no array type)."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in parameters.items()}


class SqliteWriter:
    """One connection of its own to the history's SQLite file, in one thread: a batch of statements is
    one hand-off to that thread and one commit (through aiosqlite, each statement is a hand-off)."""

    def __init__(self, url: str) -> None:
        self._path = make_url(url).database or ""
        self._thread = OneThread("history-writer")
        self._conn: sqlite3.Connection | None = None

    def _run(self, statements: list[tuple[str, dict[str, Any]]]) -> None:
        if self._conn is None:
            self._conn = connect(self._path, autocommit=True)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for query, parameters in statements:
                conn.execute(query, parameters)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def run(self, statements: list[tuple[str, dict[str, Any]]]) -> None:
        await self._thread.run(self._run, statements)

    def close(self) -> None:
        self._thread.shutdown()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
