"""Chat history for the sidebar: Chainlit's SQLAlchemy data layer on SQLite (default) or PostgreSQL.

Chainlit does not create its tables, so `ensure_schema` does (idempotently) at startup and in the
deployment's migration job. Elements (uploaded and generated images, files) are kept by a small
local storage client under the data dir and served back at `/files/...`.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

FILES_ROUTE = "/files"

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


class LocalStorageClient(BaseStorageClient):
    """Element files on local disk, read back through the app's `/files/<key>` route."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, object_key: str) -> Path | None:
        """The file behind `object_key`, or None if the key escapes the storage root."""
        path = (self.root / object_key).resolve()
        return path if path.is_relative_to(self.root) else None

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        path = self.path_for(object_key)
        if path is None:
            return {}
        if path.exists() and not overwrite:
            return {"object_key": object_key, "url": await self.get_read_url(object_key)}
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = data.encode() if isinstance(data, str) else data
        await asyncio.to_thread(path.write_bytes, payload)
        return {"object_key": object_key, "url": await self.get_read_url(object_key)}

    async def delete_file(self, object_key: str) -> bool:
        path = self.path_for(object_key)
        if path is None or not path.exists():
            return False
        path.unlink()
        return True

    async def get_read_url(self, object_key: str) -> str:
        return f"{FILES_ROUTE}/{object_key}"

    async def close(self) -> None:
        return None

    def mime_of(self, path: Path) -> str:
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class EnsembleDataLayer(SQLAlchemyDataLayer):
    """Chainlit's SQLAlchemy layer, with list columns stored as JSON text on SQLite."""

    def __init__(
        self,
        conninfo: str,
        storage: BaseStorageClient,
        *,
        on_delete_thread: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(conninfo=conninfo, storage_provider=storage)
        self._sqlite = conninfo.startswith("sqlite")
        self._on_delete_thread = on_delete_thread

    async def delete_thread(self, thread_id: str) -> None:
        """Delete the chat's history, then what the agent layer kept for it (checkpoints, documents)."""
        owner = await self.thread_owner_id(thread_id)
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

    async def execute_sql(self, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]] | int | None:
        if self._sqlite:
            parameters = {k: json.dumps(v) if isinstance(v, list) else v for k, v in parameters.items()}
        result = await super().execute_sql(query, parameters)
        if self._sqlite and isinstance(result, list):
            for row in result:
                for column in _ARRAY_COLUMNS & row.keys():
                    if isinstance(row[column], str):
                        row[column] = json.loads(row[column])
        return result
