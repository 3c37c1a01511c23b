"""The memory specialist: deterministic parsing, and real commands against a real SQLite memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agents.specialists.base import Services, TurnContext
from agents.specialists.memory import SPEC
from agents.specialists.memory.specialist import Intent, MemorySpecialist, as_fact_text, parse_intent
from agents.specialists.registry import Registry
from core.embeddings import Embedder
from core.settings import MemorySettings, Settings
from memory.factory import open_memory_service
from memory.records import Fact
from memory.service import MemoryService


def command(text: str) -> str:
    """What a typed `/memory …` hands the specialist: the registry takes the command off, once."""
    parsed = Registry({}, {SPEC.name: SPEC}).by_command(text)
    assert parsed is not None and parsed[0] is SPEC
    return parsed[1]


@pytest.mark.parametrize(
    ("request_text", "intent"),
    [
        ("", Intent("list")),
        ("list", Intent("list")),
        ("What do you remember about me?", Intent("list")),
        ("what do you know about me", Intent("list")),
        ("Can you show me my memories?", Intent("list")),
        ("The user asks what Ensemble remembers about them.", Intent("list")),
        ("forget everything", Intent("forget_all")),
        ("Please forget everything you know about me.", Intent("forget_all")),
        ("Forget all my memories", Intent("forget_all")),
        ("delete all of my stored memories", Intent("forget_all")),
        ("clear", Intent("forget_all")),
        (command("/memory clear"), Intent("forget_all")),
        ("erase your memory of me", Intent("forget_all")),
        ("forget that I like Python", Intent("forget_matching", "I like Python")),
        ("Please forget about my cat.", Intent("forget_matching", "my cat")),
        ("forget my address", Intent("forget_matching", "my address")),
        ("delete the memory about Lisbon", Intent("forget_matching", "Lisbon")),
        ("stop remembering that I smoke", Intent("forget_matching", "I smoke")),
        ("forget 3f2a9c1d", Intent("forget_id", "3f2a9c1d")),
        ("forget `3F2A9C1D`", Intent("forget_id", "3f2a9c1d")),
        ("remember that I prefer tabs", Intent("remember", "I prefer tabs")),
        ("Please remember: my name is Ana", Intent("remember", "my name is Ana")),
        ("remember my birthday is May 3", Intent("remember", "my birthday is May 3")),
    ],
)
def test_parse_intent(request_text: str, intent: Intent) -> None:
    assert parse_intent(request_text) == intent


def test_as_fact_text() -> None:
    assert as_fact_text("I prefer tabs") == "The user prefers tabs."
    assert as_fact_text("I'm vegetarian!") == "The user is vegetarian."
    assert as_fact_text("I study law") == "The user studies law."
    assert as_fact_text("I have two cats") == "The user has two cats."
    assert as_fact_text("my name is Ana") == "The user's name is Ana."
    assert as_fact_text("tabs over spaces") == "Tabs over spaces."


def test_spec_routes_requests_without_a_model() -> None:
    assert SPEC.command == "/memory"
    assert SPEC.asks_for.search("What do you remember about me?")
    assert SPEC.asks_for.search("forget everything")
    assert SPEC.asks_for.search("please forget that I like Python")
    assert SPEC.asks_for.search("Can you show me my memories?")
    assert SPEC.asks_for.search("OK, delete all my memories")
    assert not SPEC.asks_for.search("write a python function that sorts a list")
    assert not SPEC.asks_for.search("Don't forget that the list is sorted: write a binary search")
    assert not SPEC.asks_for.search("how much memory does your GPU have?")


@pytest.fixture
async def service(tmp_path: Path, embedder: Embedder) -> AsyncIterator[MemoryService]:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        memory=MemorySettings(url=SecretStr(f"sqlite:///{tmp_path / 'memory.sqlite'}")),
        _env_file=None,
    )
    memory = await open_memory_service(settings, embedder=embedder)
    assert memory is not None
    yield memory
    await memory.aclose()


def ctx(user_id: str) -> TurnContext:
    return TurnContext(user_id=user_id, thread_id="t1")


async def test_build_needs_the_memory_service(tmp_path: Path, service: MemoryService) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    async with httpx.AsyncClient() as http:
        assert SPEC.build(Services(settings, http)) is None
        built = SPEC.build(Services(settings, http, memory=service))
    assert isinstance(built, MemorySpecialist)


async def test_commands_act_only_on_the_context_user(service: MemoryService) -> None:
    specialist = MemorySpecialist(service)
    await service.remember("bob", [Fact(text="The user likes Python.")])

    empty = await specialist.run("what do you remember about me?", ctx("ana"), {})
    assert "don't remember anything" in empty.content and not empty.error

    noted = await specialist.run("remember that I live in Lisbon", ctx("ana"), {})
    assert noted.content == "Noted: The user lives in Lisbon."
    await specialist.run("remember that my name is Ana", ctx("ana"), {})
    await specialist.run("remember that I like Python", ctx("ana"), {})

    listing = await specialist.run("What do you remember about me?", ctx("ana"), {})
    assert "(3)" in listing.content and "The user's name is Ana." in listing.content
    (lisbon,) = [m for m in await service.list_memories("ana") if "Lisbon" in m.text]
    assert f"`{lisbon.short_id}`" in listing.content

    # "bob" in the request text is just words: the user is the context's, never the request's.
    forgot = await specialist.run("forget that I like Python", ctx("ana"), {})
    assert forgot.content == "Forgotten: The user likes Python."
    assert [m.text for m in await service.list_memories("bob")] == ["The user likes Python."]

    bob_id = (await service.list_memories("bob"))[0].short_id
    refused = await specialist.run(f"forget {bob_id}", ctx("ana"), {})
    assert "None of your memories has the id" in refused.content
    assert len(await service.list_memories("bob")) == 1

    by_id = await specialist.run(command(f"/memory forget {lisbon.short_id}"), ctx("ana"), {})
    assert by_id.content == "Forgotten: The user lives in Lisbon."

    nothing = await specialist.run("forget my quantum chromodynamics thesis", ctx("ana"), {})
    assert "nothing to forget" in nothing.content and "The user's name is Ana." in nothing.content

    wiped = await specialist.run("forget everything", ctx("ana"), {})
    assert "(1 memories)" in wiped.content
    assert await service.list_memories("ana") == []
    assert [m.text for m in await service.list_memories("bob")] == ["The user likes Python."]
    again = await specialist.run("forget everything", ctx("ana"), {})
    assert again.content.startswith("There was nothing to forget")


async def test_failures_are_readable_messages(service: MemoryService) -> None:
    specialist = MemorySpecialist(service)
    bad_user = await specialist.run("what do you remember about me?", ctx(""), {})
    assert bad_user.error and "no valid user" in bad_user.content
    await service.aclose()  # the store is gone: a readable error, not an exception
    broken = await specialist.run("what do you remember about me?", ctx("ana"), {})
    assert broken.error and "unavailable right now" in broken.content
