"""The supervisor against a real OpenAI-compatible server: llama.cpp serving SmolLM2-135M on CPU."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from agents.runtime import Ensemble
from agents.supervisor.events import (
    AnswerToken,
    StepFinished,
    StepStarted,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from core.models import chat_model
from core.settings import ChatEndpoint, LocalLLMSettings, Settings
from tests.conftest import free_port
from tests.support.poet import POET
from tests.support.poet import SPEC as POET_SPEC

pytestmark = pytest.mark.llm


def settings_for(llm: LocalLLMSettings, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, local_llm=llm, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
async def service(local_llm: LocalLLMSettings, tmp_path: Path) -> AsyncIterator[Ensemble]:
    ensemble = await Ensemble.start(settings_for(local_llm, tmp_path))
    yield ensemble
    await ensemble.aclose()


async def collect(service: Ensemble, text: str, thread: str = "t") -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id=thread, user_id="u", text=text)]


async def test_local_server_streams_tokens(local_llm: LocalLLMSettings, tmp_path: Path) -> None:
    endpoint = settings_for(local_llm, tmp_path).chat_endpoint("supervisor")
    assert endpoint is not None and endpoint.base_url == local_llm.base_url
    chunks = [c.text async for c in chat_model(endpoint).astream([HumanMessage("Name three colours.")])]
    assert len([c for c in chunks if c]) > 3
    assert "".join(chunks).strip()


async def test_full_turn_through_code_specialist(service: Ensemble) -> None:
    events = await collect(service, "/code Write a Python function add(a, b) that returns a + b.")
    started = [e for e in events if isinstance(e, StepStarted)]
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [s.specialist for s in started] == ["code"]
    assert finished and not finished[0].error and finished[0].output.strip()
    assert len([e for e in events if isinstance(e, AnswerToken)]) > 3, "the forwarded answer streams"
    final = events[-1]
    assert isinstance(final, TurnFinished) and final.content == finished[0].output
    history = await service.history("t")
    assert [role for role, _ in history] == ["user", "assistant"]


async def test_full_turn_with_model_decision(service: Ensemble) -> None:
    events = await collect(service, "Hello! What is the capital of France?")
    assert not any(isinstance(e, TurnFailed) for e in events)
    final = events[-1]
    assert isinstance(final, TurnFinished) and final.content.strip()
    # an answer written by a model (direct, or forwarded from a model-backed specialist) streamed token by
    # token; the 135M router may also pick memory or documents, which answer without a model
    steps = {e.specialist for e in events if isinstance(e, StepStarted)}
    if not steps & {"memory", "documents"}:
        assert len([e for e in events if isinstance(e, AnswerToken)]) > 1, steps


async def test_cancelled_turn_stops_the_model_stream(local_llm: LocalLLMSettings, tmp_path: Path) -> None:
    settings = settings_for(local_llm, tmp_path)
    long_endpoint = settings.local_chat_endpoint().model_copy(update={"max_tokens": 3000})
    # SmolLM2's end token (<|im_end|>, id 2) banned: the reply runs to max_tokens (~50 s), so the stream
    # is surely still going when it is cancelled (a short reply could end before the cancel lands)
    llm = chat_model(long_endpoint).bind(logit_bias={2: -100})
    prompt = [HumanMessage("Count from 1 to 2000, one number per line.")]

    got_token = asyncio.Event()

    async def long_stream() -> None:
        async for chunk in llm.astream(prompt):
            if chunk.text:
                got_token.set()

    task = asyncio.create_task(long_stream())
    await asyncio.wait_for(got_token.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # llama.cpp serves one generation at a time: a quick answer now proves the long one was stopped
    started = time.monotonic()
    quick = await chat_model(settings.local_chat_endpoint().model_copy(update={"max_tokens": 8})).ainvoke("Hi")
    assert quick.text is not None
    assert time.monotonic() - started < 10, "the cancelled generation kept the server busy"


async def test_cancelled_turn_through_the_service(service: Ensemble) -> None:
    first_token = asyncio.Event()

    async def consume() -> None:
        async for event in service.stream_turn(
            thread_id="c",
            user_id="u",
            text="/code Write a long Python module with ten classes, each with docstrings and tests.",
        ):
            if isinstance(event, AnswerToken):
                first_token.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_token.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    history = await service.history("c")
    assert history[-1][0] == "assistant" and "interrupted" in history[-1][1]
    events = await collect(service, "/code print hello in Python", thread="c")
    assert isinstance(events[-1], TurnFinished)


async def test_server_down_gives_a_readable_message(tmp_path: Path) -> None:
    down = ChatEndpoint(
        base_url=f"http://127.0.0.1:{free_port()}/v1", model="mixtral", timeout=5, structured_output="tools"
    )
    settings = Settings(data_dir=tmp_path, supervisor=down, _env_file=None)  # type: ignore[call-arg]
    ensemble = await Ensemble.start(settings)
    try:
        started = time.monotonic()
        events = await collect(ensemble, "hello")
        assert time.monotonic() - started < 10
        assert isinstance(events[-1], TurnFailed)
        assert "Could not reach The supervisor model (mixtral at http://127.0.0.1:" in events[-1].message
        # the chat stays usable: the next turn fails the same clean way, history stays consistent
        events = await collect(ensemble, "again")
        assert isinstance(events[-1], TurnFailed)
        assert [role for role, _ in await ensemble.history("t")] == ["user", "assistant", "user", "assistant"]
    finally:
        await ensemble.aclose()


async def test_silent_server_times_out_with_a_readable_message(tmp_path: Path) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow = ChatEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="mixtral", timeout=1.5, structured_output="tools")
    settings = Settings(data_dir=tmp_path, supervisor=slow, _env_file=None)  # type: ignore[call-arg]
    ensemble = await Ensemble.start(settings)
    try:
        started = time.monotonic()
        events = await collect(ensemble, "hello")
        assert time.monotonic() - started < 6
        assert isinstance(events[-1], TurnFailed) and "did not answer within 1.5 s" in events[-1].message
    finally:
        await ensemble.aclose()
        server.close()


async def test_a_specialist_defined_in_a_test_gets_its_own_model_from_its_role(
    local_llm: LocalLLMSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' poet names the model role `poet`; ENSEMBLE_POET__* alone points it at the real server."""
    monkeypatch.setenv("ENSEMBLE_POET__BASE_URL", local_llm.base_url)
    monkeypatch.setenv("ENSEMBLE_POET__MODEL", local_llm.model_alias)
    monkeypatch.setenv("ENSEMBLE_POET__MAX_TOKENS", "48")
    settings = settings_for(local_llm, tmp_path)
    ensemble = await Ensemble.start(settings, specs=[POET_SPEC], with_documents=False, with_memory=False)
    try:
        assert ensemble.status() == {"poet": "ready"}
        client = ensemble.models.get(POET)
        assert client is not None and (client.endpoint.base_url, client.endpoint.max_tokens) == (local_llm.base_url, 48)
        events = await collect(ensemble, "/poem Two short lines about the sea.")
    finally:
        await ensemble.aclose()
    started = [(e.specialist, e.title, e.input) for e in events if isinstance(e, StepStarted)]
    assert started == [("poet", "Poet", "Two short lines about the sea.")]
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert finished and not finished[0].error and finished[0].output
    assert len([e for e in events if isinstance(e, AnswerToken)]) > 1, "its model's answer streams"
    assert events[-1] == TurnFinished(finished[0].output)
