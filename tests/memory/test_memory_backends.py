"""The memory service, the same tests on every backend: SQLite file, PostgreSQL (no pgvector), pgvector."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.embeddings import Embedder
from core.settings import MemorySettings, Settings
from memory.factory import open_memory_service
from memory.ids import InvalidUserId
from memory.records import Fact
from memory.service import MemoryService

# Ids chosen to break naive namespacing: prefixes of one another, separators, LIKE/GLOB wildcards,
# quotes, SQL, the root label itself and the hex label another id encodes to.
ADVERSARIAL_IDS = [
    "a",
    "ab",
    "a.b",
    "a.",
    ".",
    "..",
    "a/b",
    "a/",
    "/",
    "a\\b",
    "*",
    "a*",
    "%",
    "a%",
    "_",
    "a_",
    "?",
    "[a]",
    "a'b",
    'a"b',
    "' OR '1'='1",
    "a; DROP TABLE store; --",
    "memories",
    "u61",  # the namespace label of user "a"
    "u61.u62",
    "a b",
    "é",
    "ü/../a",
    "x" * 256,
]


async def test_remember_list_recall(memory: MemoryService) -> None:
    await memory.remember(
        "ana",
        [
            Fact(text="The user's name is Ana.", key="name", category="identity"),
            "The user likes programming in Python.",
            "The user lives in Lisbon.",
        ],
    )
    listed = await memory.list_memories("ana")
    assert sorted(m.text for m in listed) == [
        "The user likes programming in Python.",
        "The user lives in Lisbon.",
        "The user's name is Ana.",
    ]
    assert all(m.created_at.tzinfo is not None and m.updated_at.tzinfo is not None for m in listed)
    query = "which programming language does the user like?" if memory.semantic else "python"
    recalled = await memory.recall("ana", query, k=1)
    assert [m.text for m in recalled] == ["The user likes programming in Python."]
    assert len(await memory.recall("ana", "anything", k=2)) == 2
    assert await memory.recall("ana", "python", k=0) == []
    assert len(await memory.recall("ana", "")) == 3  # no query: the most recent ones


async def test_semantic_recall_finds_meaning_not_words(memory: MemoryService) -> None:
    if not memory.semantic:
        pytest.skip("keyword recall matches words, not meanings (no embeddings in this mode)")
    await memory.remember(
        "ben", ["The user has a dog called Rex.", "The user works as a nurse.", "The user likes jazz."]
    )
    recalled = await memory.recall("ben", "what is my pet's name?", k=1)
    assert recalled[0].text == "The user has a dog called Rex."
    assert recalled[0].score is not None


async def test_same_key_updates_instead_of_appending(memory: MemoryService) -> None:
    (first,) = await memory.remember("cy", [Fact(text="The user's name is Ana.", key="name")])
    (second,) = await memory.remember("cy", [Fact(text="The user's name is Bea.", key="name")])
    assert second.previous is not None and second.previous.id == first.memory.id
    assert second.memory.id == first.memory.id
    (only,) = await memory.list_memories("cy")
    assert only.text == "The user's name is Bea."
    assert only.created_at == first.memory.created_at
    assert only.updated_at >= first.memory.updated_at


async def test_a_wrong_key_does_not_overwrite_an_unrelated_memory(memory: MemoryService) -> None:
    await memory.remember("cyd", [Fact(text="The user's name is Ana.", key="name")])
    (outcome,) = await memory.remember("cyd", [Fact(text="My favourite editor is vim.", key="name")])
    assert not outcome.updated  # a small model's mislabelled key must not erase the user's name
    texts = sorted(m.text for m in await memory.list_memories("cyd"))
    assert texts == ["My favourite editor is vim.", "The user's name is Ana."]


async def test_same_words_update_and_distinct_facts_append(memory: MemoryService) -> None:
    await memory.remember("di", ["The user likes Python.", "The user likes Rust."])
    (again,) = await memory.remember("di", ["the user LIKES python"])
    assert again.updated
    assert sorted(m.text for m in await memory.list_memories("di")) == [
        "The user likes Rust.",
        "the user LIKES python",
    ]


async def test_near_duplicate_meaning_updates(memory: MemoryService) -> None:
    await memory.remember("ed", ["The user is building a chess engine in Rust."])
    (outcome,) = await memory.remember("ed", ["The user is working on a Rust chess engine."])
    if memory.semantic:
        assert outcome.updated
        assert [m.text for m in await memory.list_memories("ed")] == ["The user is working on a Rust chess engine."]
    else:  # keyword mode only merges identical wording
        assert not outcome.updated
        assert len(await memory.list_memories("ed")) == 2


async def test_forget_by_id_and_prefix(memory: MemoryService) -> None:
    outcomes = await memory.remember(
        "fay", ["The user likes tea.", "The user likes cake.", "The user owns a bike."]
    )
    tea, cake, bike = (o.memory for o in outcomes)
    forgotten = await memory.forget("fay", tea.id)
    assert forgotten is not None and forgotten.text == tea.text
    assert await memory.forget("fay", tea.id) is None
    assert await memory.forget("fay", cake.short_id) is not None  # an unambiguous prefix
    assert await memory.forget("fay", "zzzz-not-an-id") is None
    assert await memory.forget("fay", bike.id[:3]) is None  # too short to be trusted as a prefix
    assert [m.id for m in await memory.list_memories("fay")] == [bike.id]


async def test_forget_matching(memory: MemoryService) -> None:
    await memory.remember(
        "gus", ["The user likes Python.", "The user lives in Lisbon.", "The user has two cats."]
    )
    removed = await memory.forget_matching("gus", "that I like python")
    assert [m.text for m in removed] == ["The user likes Python."]
    assert await memory.forget_matching("gus", "quantum chromodynamics") == []
    assert await memory.forget_matching("gus", "that") == []  # no significant word: never "everything"
    assert sorted(m.text for m in await memory.list_memories("gus")) == [
        "The user has two cats.",
        "The user lives in Lisbon.",
    ]


async def test_forget_all_only_that_user(memory: MemoryService) -> None:
    await memory.remember("hal", ["The user likes tea.", "The user likes cake."])
    await memory.remember("hal2", ["The user likes coffee."])
    assert await memory.forget_all("hal") == 2
    assert await memory.list_memories("hal") == []
    assert await memory.forget_all("hal") == 0
    assert [m.text for m in await memory.list_memories("hal2")] == ["The user likes coffee."]


async def test_adversarial_ids_are_isolated(memory: MemoryService) -> None:
    secrets = {uid: f"The user's secret word is zq{n}x{n * 7}." for n, uid in enumerate(ADVERSARIAL_IDS)}
    ids = {}
    for uid, secret in secrets.items():
        (outcome,) = await memory.remember(uid, [Fact(text=secret, key="secret_word")])
        ids[uid] = outcome.memory.id

    # Every user probes with the secrets of "a", "ab", "a.b" (its prefixes and look-alikes), "*" and "%".
    probes = [(uid, secrets[uid]) for uid in ("a", "ab", "a.b", "*", "%")]
    for uid, secret in secrets.items():
        assert [m.text for m in await memory.list_memories(uid)] == [secret], uid
        for other, other_secret in probes:
            recalled = await memory.recall(uid, other_secret, k=5)
            assert [m.text for m in recalled] == [secret], (uid, other)
            if other != uid:
                assert await memory.get(uid, ids[other]) is None
                assert await memory.forget(uid, ids[other]) is None, (uid, other)

    # "forget <B's secret>" said by A may only ever remove A's own (similar-sounding) memory.
    for uid in ADVERSARIAL_IDS[1::4]:
        for other, other_secret in probes:
            if other != uid:
                removed = await memory.forget_matching(uid, other_secret)
                assert {m.id for m in removed} <= {ids[uid]}, (uid, other)
        for other, secret in secrets.items():
            if other != uid:
                assert [m.text for m in await memory.list_memories(other)] == [secret], (uid, other)
        await memory.remember(uid, [Fact(text=secrets[uid], key="secret_word")])

    # Erasing users one by one never touches the rest.
    remaining = dict(secrets)
    for uid in ADVERSARIAL_IDS[::2]:
        assert await memory.forget_all(uid) == 1, uid
        del remaining[uid]
        for other, secret in remaining.items():
            assert [m.text for m in await memory.list_memories(other)] == [secret], (uid, other)


@pytest.mark.parametrize("bad", ["", "   ", "a\x00b", "line\nbreak", "tab\there", "x" * 257])
async def test_invalid_user_ids_are_refused(memory: MemoryService, bad: str) -> None:
    with pytest.raises(InvalidUserId):
        await memory.remember(bad, ["The user likes tea."])
    with pytest.raises(InvalidUserId):
        await memory.list_memories(bad)
    with pytest.raises(InvalidUserId):
        await memory.recall(bad, "tea")
    with pytest.raises(InvalidUserId):
        await memory.forget_matching(bad, "tea")
    with pytest.raises(InvalidUserId):
        await memory.forget_all(bad)


async def test_memories_survive_a_restart(backend, memory: MemoryService) -> None:  # type: ignore[no-untyped-def]
    await memory.remember(
        "ivy", [Fact(text="The user's name is Ivy.", key="name"), "The user likes sailing."]
    )
    await memory.aclose()
    reopened = await backend.open()
    try:
        texts = sorted(m.text for m in await reopened.list_memories("ivy"))
        assert texts == ["The user likes sailing.", "The user's name is Ivy."]
        (outcome,) = await reopened.remember("ivy", [Fact(text="The user's name is Ivy Lee.", key="name")])
        assert outcome.updated  # dedupe works on what the previous process stored
        query = "what does the user do for fun?" if reopened.semantic else "sailing"
        assert (await reopened.recall("ivy", query, k=1))[0].text == "The user likes sailing."
    finally:
        await reopened.aclose()


async def test_concurrent_writes_of_one_user_do_not_duplicate(memory: MemoryService) -> None:
    facts = [Fact(text=f"The user's home city is City{n}.", key="home_city") for n in range(8)]
    await asyncio.gather(*(memory.remember("jo", [fact]) for fact in facts))
    assert len(await memory.list_memories("jo")) == 1


async def test_oldest_memories_go_past_the_limit(backend) -> None:  # type: ignore[no-untyped-def]
    service = await backend.open(max_per_user=3)
    try:
        facts = [
            "The user likes tea.",
            "The user owns a red bicycle.",
            "The user studied law in Paris.",
            "The user plays the cello.",
            "The user is allergic to peanuts.",
        ]
        for fact in facts:
            await service.remember("kim", [fact])
        assert [m.text for m in await service.list_memories("kim")] == facts[:1:-1]
    finally:
        await service.aclose()


async def test_recall_orders_and_timestamps(memory: MemoryService) -> None:
    before = datetime.now(UTC)
    await memory.remember("lu", ["The user likes olives."])
    await memory.remember("lu", ["The user likes figs."])
    listed = await memory.list_memories("lu")
    assert [m.text for m in listed] == ["The user likes figs.", "The user likes olives."]
    assert all(m.updated_at >= before.replace(microsecond=0) for m in listed)


async def test_memories_from_a_keyword_only_run_become_semantic(backend) -> None:  # type: ignore[no-untyped-def]
    """Memories written without embeddings (vector=off, or before pgvector) are embedded at startup."""
    if backend.expected_mode == "keyword":
        pytest.skip("this backend is keyword-only: nothing to embed")
    plain = await backend.open(vector="off")
    try:
        assert plain.mode == "keyword"
        await plain.remember(
            "mo", ["The user has a dog called Rex.", "The user works as a nurse.", "The user likes jazz."]
        )
        await plain.remember("mo.", ["The user has a cat called Tom."])
    finally:
        await plain.aclose()
    service = await backend.open()
    try:
        assert await service.wait_for_reindex() == 4
        assert await service.reindex() == 0  # idempotent
        (found,) = await service.recall("mo", "what is my pet's name?", k=1)
        assert found.text == "The user has a dog called Rex." and found.score is not None
        assert [m.text for m in await service.recall("mo.", "what is my pet's name?", k=5)] == [
            "The user has a cat called Tom."
        ]
    finally:
        await service.aclose()


class _DocumentsStyleEmbedder:
    """The documents room's embedder (under its own model name), over the real model."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.dimension = inner.dimension
        self.model_name = "documents/all-MiniLM-L6-v2"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inner.embed(texts)

    async def aclose(self) -> None:
        return None


async def test_another_rooms_embedder_can_serve_memory(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, memory=MemorySettings(vector="scan"), _env_file=None
    )
    shared = _DocumentsStyleEmbedder(embedder)  # one Embedder protocol: no adapter between the rooms
    assert shared.dimension == 384 and shared.model_name == "documents/all-MiniLM-L6-v2"
    service = await open_memory_service(settings, embedder=shared)
    assert service is not None and service.mode == "scan"
    try:
        await service.remember("nia", ["The user has a dog called Rex.", "The user works as a nurse."])
        (found,) = await service.recall("nia", "what is my pet's name?", k=1)
        assert found.text == "The user has a dog called Rex."
    finally:
        await service.aclose()


async def test_closing_during_a_reindex_stops_it_cleanly(backend) -> None:  # type: ignore[no-untyped-def]
    """aclose() while older memories are being embedded: no hang, no connection left checked out."""
    if backend.expected_mode == "keyword":
        pytest.skip("this backend is keyword-only: nothing to embed")
    plain = await backend.open(vector="off")
    try:
        for n in range(30):
            facts = [f"The user's lucky number is {n}.", f"The user owns {n} books."]
            await plain.remember(f"user-{n}", facts)
    finally:
        await plain.aclose()
    service = await backend.open()
    await asyncio.sleep(0.05)  # let the background reindex start
    await asyncio.wait_for(service.aclose(), timeout=60)
    # The schema drop in the fixture's teardown would block on a connection left mid-transaction.


class _FlakyEmbedder:
    """The real model, until `down` is set: then it fails as an unreachable embedding server would."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner
        self.down = False

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.down:
            raise ConnectionError("embedding server unreachable")
        return await self._inner.embed(texts)

    async def aclose(self) -> None:
        return None


async def test_an_embedder_outage_degrades_to_keywords_and_loses_nothing(backend) -> None:  # type: ignore[no-untyped-def]
    if backend.expected_mode == "keyword":
        pytest.skip("this backend is keyword-only: no embedder to lose")
    flaky = _FlakyEmbedder(backend.embedder)
    backend = dataclasses.replace(backend, embedder=flaky)
    service = await backend.open()
    try:
        await service.remember("oz", ["The user has a dog called Rex.", "The user works as a nurse."])
        flaky.down = True
        (outcome,) = await service.remember("oz", ["The user plays the banjo."])
        assert not outcome.updated
        assert [m.text for m in await service.recall("oz", "banjo", k=1)] == ["The user plays the banjo."]
        assert len(await service.list_memories("oz")) == 3
        assert [m.text for m in await service.forget_matching("oz", "nurse")] == [
            "The user works as a nurse."
        ]
    finally:
        await service.aclose()
    flaky.down = False
    reopened = await backend.open()  # the memory stored during the outage gets its vector now
    try:
        assert await reopened.wait_for_reindex() >= 1
        (found,) = await reopened.recall("oz", "which instrument do I play?", k=1)
        assert found.text == "The user plays the banjo."
    finally:
        await reopened.aclose()
