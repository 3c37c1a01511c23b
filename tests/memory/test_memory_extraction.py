"""Fact extraction: scripted fake models for valid and malformed replies, then the real llama.cpp server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.store.memory import InMemoryStore

from core.settings import MemorySettings
from memory.extraction import (
    FACTS_SCHEMA,
    extract_facts,
    parse_facts,
    response_format,
    speaks_of_the_user,
    transcript,
)
from memory.records import Fact
from memory.service import MemoryService

TURN = [
    HumanMessage("Hi! I'm Ana, I live in Lisbon and I'm writing a chess engine in Rust."),
    AIMessage("Nice to meet you, Ana! How is the engine going?"),
]


class ScriptedChatModel(BaseChatModel):
    """Replies with the scripted texts in order (or raises them) and records what it was sent."""

    replies: list[str | Exception]
    calls: list[dict[str, Any]]

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> ChatResult:
        self.calls.append({"messages": messages, **kwargs})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(messages, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._reply(messages, kwargs)


def scripted(*replies: str | Exception) -> ScriptedChatModel:
    return ScriptedChatModel(replies=list(replies), calls=[])


VALID = json.dumps(
    {
        "facts": [
            {"text": "The user's name is Ana.", "key": "name", "category": "identity"},
            {"text": "The user lives in Lisbon.", "key": "home_city", "category": "identity"},
            {"text": "The user is writing a chess engine in Rust.", "key": None, "category": "project"},
        ]
    }
)


async def test_extract_scripted_valid_json_gives_facts() -> None:
    model = scripted(VALID)
    facts = await extract_facts(model, TURN)
    assert facts == [
        Fact(text="The user's name is Ana.", key="name", category="identity"),
        Fact(text="The user lives in Lisbon.", key="home_city", category="identity"),
        Fact(text="The user is writing a chess engine in Rust.", key=None, category="project"),
    ]
    (call,) = model.calls
    assert call["response_format"] == {"type": "json_object", "schema": FACTS_SCHEMA}
    assert isinstance(call["messages"][0], SystemMessage)
    assert "User: Hi! I'm Ana" in call["messages"][1].text
    assert "Assistant: Nice to meet you" in call["messages"][1].text


async def test_extract_scripted_uses_json_schema_for_openai_style_servers() -> None:
    for mode in ("json_schema", "tools"):
        model = scripted('{"facts": []}')
        assert await extract_facts(model, TURN, mode=mode) == []
        assert model.calls[0]["response_format"] == response_format("json_schema")
        assert model.calls[0]["response_format"]["json_schema"]["schema"] == FACTS_SCHEMA


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "Sure! The user is Ana.",
        "{not json",
        '{"facts": "Ana"}',
        '["The user is Ana"]',
        '{"facts": [1, 2, 3]}',
        '{"memories": [{"text": "The user is Ana."}]}',
        "null",
        '{"facts": [{"text": ""}, {"text": "x"}, {"key": "name"}]}',
    ],
)
async def test_extract_scripted_malformed_reply_gives_no_facts(reply: str) -> None:
    assert await extract_facts(scripted(reply), TURN) == []


async def test_extract_scripted_keeps_good_facts_beside_bad_ones() -> None:
    reply = json.dumps(
        {
            "facts": [
                {"text": "The user's name is Ana.", "key": "Bad Key!", "category": "identity"},
                {"text": "The user likes tea.", "key": "drink", "category": "not-a-category"},
                {"text": "The user likes figs.", "category": "preference", "extra": "ignored"},
                {"text": "The user likes figs.", "category": "preference"},
            ]
        }
    )
    assert await extract_facts(scripted(f"```json\n{reply}\n```"), TURN) == [
        Fact(text="The user likes figs.", category="preference")
    ]


async def test_extract_scripted_model_failure_gives_no_facts() -> None:
    assert await extract_facts(scripted(ConnectionError("server gone")), TURN) == []


async def test_extract_scripted_skips_the_model_without_user_words() -> None:
    model = scripted(VALID)
    assert await extract_facts(model, [AIMessage("Hello!"), SystemMessage("be nice")]) == []
    assert model.calls == []


def test_transcript_keeps_the_newest_words_within_budget() -> None:
    messages: list[BaseMessage] = [HumanMessage(f"message {n} " + "x" * 1400) for n in range(10)]
    text = transcript(messages)
    assert len(text) <= 6000
    assert "message 9 " in text and "message 0 " not in text


def test_parse_facts_caps_the_count() -> None:
    many = {
        "facts": [{"text": f"The user likes item {n}.", "key": None, "category": "other"} for n in range(30)]
    }
    assert len(parse_facts(json.dumps(many))) == 10


async def test_learn_scripted_stores_facts_and_survives_bad_replies(tmp_path: Path) -> None:
    service = MemoryService(InMemoryStore(), MemorySettings(), backend="memory", mode="keyword")
    stored = await service.learn("ana", scripted(VALID), TURN)
    assert sorted(r.memory.text for r in stored) == [
        "The user is writing a chess engine in Rust.",
        "The user lives in Lisbon.",
        "The user's name is Ana.",
    ]
    assert await service.learn("ana", scripted("garbage"), TURN) == []
    assert await service.learn("ana", scripted(RuntimeError("boom")), TURN) == []
    assert await service.learn("", scripted(VALID), TURN) == []  # an invalid user id stores nothing
    assert len(await service.list_memories("ana")) == 3


@pytest.mark.parametrize(
    ("text", "personal"),
    [
        ("My favourite colour is teal.", True),
        ("Remember that my dog is called Rex.", True),
        ("I'm Ana and I live in Lisbon.", True),
        ("We use Postgres at work.", True),
        ("call me Sam from now on", True),
        ("What do you remember about me?", True),
        ("Give me three tips for a productive morning.", False),
        ("Tell me a joke about cats.", False),
        ("Write a Python function that reverses a list.", False),
        ("What is the capital of France?", False),
        ("Explain to me how TCP works.", False),
    ],
)
def test_only_messages_about_the_user_are_sent_for_extraction(text: str, personal: bool) -> None:
    assert speaks_of_the_user(text) is personal


def test_worth_learning_follows_the_extract_when_setting() -> None:
    personal = MemoryService(InMemoryStore(), MemorySettings(), backend="memory", mode="keyword")
    always = MemoryService(InMemoryStore(), MemorySettings(extract_when="always"), backend="memory", mode="keyword")
    assert personal.worth_learning("I love sailing.") and not personal.worth_learning("Tell me a joke.")
    assert always.worth_learning("Tell me a joke.")


@pytest.fixture(scope="session")
def llama_cpp_installed() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the `local` extra)")


@pytest.mark.llm
async def test_extract_against_real_local_llama_server(llama_cpp_installed: None, local_llm: Any) -> None:
    """SmolLM2-135M behind llama.cpp's OpenAI API: only schema-valid output is asserted (it is tiny)."""
    jsonschema = pytest.importorskip("jsonschema")
    from core.models import chat_model
    from core.settings import Settings

    endpoint = Settings(local_llm=local_llm, _env_file=None).local_chat_endpoint()  # type: ignore[call-arg]
    llm = chat_model(endpoint)
    raw = await llm.bind(response_format=response_format("json_object")).ainvoke(
        [SystemMessage("Extract facts about the user as JSON."), HumanMessage(TURN[0].text)]
    )
    jsonschema.validate(json.loads(raw.text), FACTS_SCHEMA)
    facts = await extract_facts(llm, TURN, mode="json_object")
    assert all(isinstance(f, Fact) for f in facts)
