"""The chat-history schema Ensemble creates for Chainlit's data layer, on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chainlit_app.persistence import ensure_schema


async def test_sqlite_history_is_created_twice_safely_and_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'history.sqlite'}"
    await ensure_schema(url)
    await ensure_schema(url)  # every start runs it again
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"users", "threads", "steps", "elements", "feedbacks"} <= tables
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
