"""Chat-history steps written behind (chainlit_app/persistence.py): batched, merged, never lost or read stale."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from chainlit.context import init_http_context

from chainlit_app.persistence import STEP_WRITE_DELAY, EnsembleDataLayer, LocalStorageClient, ensure_schema


def step(step_id: str, thread_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "threadId": thread_id, "name": "Ensemble", "type": "assistant_message",
            "streaming": False, "output": "", "createdAt": "2026-12-05T00:00:00Z", **fields}


def rows(path: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return {r[0]: (r[1], r[2]) for r in db.execute('SELECT "id", "threadId", "output" FROM steps')}


async def layer_on(tmp_path: Path) -> tuple[EnsembleDataLayer, Path]:
    init_http_context()  # as in an HTTP route: Chainlit's step writes need a context
    path = tmp_path / "history.sqlite"
    url = f"sqlite+aiosqlite:///{path}"
    await ensure_schema(url)
    return EnsembleDataLayer(url, LocalStorageClient(tmp_path / "files")), path


async def test_steps_are_written_behind_in_one_batch_with_a_step_changed_twice_written_once(tmp_path: Path) -> None:
    layer, path = await layer_on(tmp_path)
    try:
        await layer.create_step(step("s1", "t1", output="Deciding ..."))
        await layer.create_step(step("s2", "t2", output="hello"))
        await layer.update_step(step("s1", "t1", output="Answered directly", end="2026-12-05T00:00:01Z"))
        assert rows(path) == {}, "nothing is written before the delay"
        await asyncio.sleep(STEP_WRITE_DELAY * 3)
        assert rows(path) == {"s1": ("t1", "Answered directly"), "s2": ("t2", "hello")}
        with sqlite3.connect(path) as db:  # the chats exist, as Chainlit's own layer makes sure
            assert {r[0] for r in db.execute('SELECT "id" FROM threads')} == {"t1", "t2"}
            assert db.execute('SELECT "end" FROM steps WHERE "id" = \'s1\'').fetchone() == ("2026-12-05T00:00:01Z",)
    finally:
        await layer.close()


async def test_a_read_sees_pending_steps_and_close_writes_them(tmp_path: Path) -> None:
    layer, path = await layer_on(tmp_path)
    await layer.create_step(step("s1", "t1", output="first"))
    assert await layer.step_thread_id("s1") == "t1", "a read must first write what is pending"
    await layer.create_step(step("s2", "t1", output="second"))
    await layer.close()  # shutdown: nothing pending is lost
    assert rows(path) == {"s1": ("t1", "first"), "s2": ("t1", "second")}


async def test_a_step_that_cannot_be_stored_does_not_cost_the_others_theirs(tmp_path: Path) -> None:
    layer, path = await layer_on(tmp_path)
    try:
        await layer.create_step(step("good-1", "t1", output="kept"))
        await layer.create_step(step("bad", "t1", output="x", name=None, type=None, streaming=None,
                                     nosuchcolumn="breaks the statement"))
        await layer.create_step(step("good-2", "t2", output="kept too"))
        await layer.flush_steps()
        assert rows(path) == {"good-1": ("t1", "kept"), "good-2": ("t2", "kept too")}
    finally:
        await layer.close()
