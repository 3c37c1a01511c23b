"""Chats and memories survive a restart, on SQLite files and on the real PostgreSQL.

The supervisor model here is scripted (it records what it was shown), so that the test can check
that the model sees the earlier turns after a restart; the checkpointer, the memory store and the
databases are real.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage
from pydantic import SecretStr

from agents.runtime import Ensemble
from agents.supervisor.events import TurnFinished
from core.models import ModelClients
from core.settings import RouterSettings, Settings
from tests.support.scripted import ScriptedChatModel, scripted_client

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_reachable() -> bool:
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "postgres":
        if not postgres_reachable():
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES} (this machine kind runs one)")
        yield {"data_dir": tmp_path, "database_url": SecretStr(POSTGRES)}
    else:
        yield {"data_dir": tmp_path}


def decision() -> AIMessage:
    return AIMessage(content=json.dumps({"tasks": []}))


async def start(settings: Settings, llm: ScriptedChatModel) -> Ensemble:
    models = ModelClients({"supervisor": scripted_client(llm)})
    return await Ensemble.start(settings, models=models, with_documents=False)


async def test_scripted_restart_keeps_the_chat_and_the_users_memories(backend: dict[str, Any]) -> None:
    # the scripted model makes the routing decision ("What do I love?" would otherwise go, rightly, to the
    # memory specialist by the fast stage): this test is about what survives a restart
    settings = Settings(_env_file=None, router=RouterSettings(mode="model"), **backend)  # type: ignore[arg-type]
    thread, user = f"chat-{uuid.uuid4().hex}", f"user-{uuid.uuid4().hex}"

    first = ScriptedChatModel(script=[decision(), AIMessage(content="Noted, you like sailing.")])
    service = await start(settings, first)
    try:
        assert service.memory is not None, "the memory store should open on this backend"
        events = [e async for e in service.stream_turn(thread_id=thread, user_id=user, text="I love sailing.")]
        assert isinstance(events[-1], TurnFinished)
        await service.memory.remember(user, ["The user loves sailing."])
    finally:
        await service.aclose()

    second = ScriptedChatModel(script=[decision(), AIMessage(content="You love sailing.")])
    service = await start(settings, second)
    try:
        events = [e async for e in service.stream_turn(thread_id=thread, user_id=user, text="What do I love?")]
        assert events[-1] == TurnFinished("You love sailing.")
        shown = "\n".join(m.text for m in second.calls[-1])
        assert "I love sailing." in shown and "Noted, you like sailing." in shown, "earlier turns after restart"
        assert "The user loves sailing." in shown, "the user's memory is recalled after restart"
        history = await service.history(thread)
        assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"]
        # another user shares nothing of it
        assert await service.memories(f"{user}-other") == []
        # deleting the chat deletes its checkpoints
        await service.delete_thread(thread, user)
        assert await service.history(thread) == []
        assert await service.forget(user) == 1
    finally:
        await service.aclose()
