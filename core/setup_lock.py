"""One process at a time sets up the schemas of a shared PostgreSQL database.

Replicas that start together on a new database would otherwise race in each library's idempotent
setup (LangGraph's checkpoint migrations insert their version rows, and the second replica's insert
fails: `checkpoint_migrations_pkey`). A PostgreSQL advisory lock, held on a connection of its own for
the length of the setup, puts them in a row; the later ones then find everything in place. SQLite
(one process) needs no lock.

A waiting process polls with `pg_try_advisory_lock` instead of blocking in `pg_advisory_lock`: a
statement blocked in the server keeps a snapshot open, and the holder's setup runs `CREATE INDEX
CONCURRENTLY` (LangGraph's migrations), which waits for every older snapshot to end: a deadlock that
PostgreSQL does not detect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.databases import postgres
from core.settings import Settings

SETUP_LOCK_KEY = 0x656E7365  # an arbitrary constant naming "Ensemble's schema setup" advisory lock
POLL_SECONDS = 0.25


@asynccontextmanager
async def schema_setup_lock(settings: Settings) -> AsyncIterator[None]:
    """Hold the database's setup lock (PostgreSQL) while the block runs; nothing on SQLite."""
    database = postgres(settings)
    if database is None:
        yield
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(database.target, autocommit=True) as conn:
        while True:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK_KEY,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                break
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
