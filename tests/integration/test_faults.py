"""Model servers that misbehave: each gives a clear message in time, history stays consistent, others go on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.runtime import Ensemble
from agents.supervisor.events import TurnEvent, TurnFailed, TurnFinished
from core.settings import ChatEndpoint, Settings
from tests.support.faulty_server import FaultyServer, faulty_server


def endpoint(server: FaultyServer, timeout: float = 3.0) -> ChatEndpoint:
    return ChatEndpoint(base_url=server.base_url, model="fixture", timeout=timeout, structured_output="json_object")


async def start(tmp_path: Path, supervisor: ChatEndpoint, code: ChatEndpoint | None = None) -> Ensemble:
    settings = Settings(data_dir=tmp_path, supervisor=supervisor, code=code or ChatEndpoint(),  # type: ignore[call-arg]
                        _env_file=None)
    return await Ensemble.start(settings, with_documents=False, with_memory=False)


@pytest.fixture
async def server() -> AsyncIterator[FaultyServer]:
    async with faulty_server() as running:
        yield running


async def turn(service: Ensemble, text: str, thread: str = "t") -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id=thread, user_id="u", text=text)]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("error500", "answered with HTTP 500"),
        ("malformed", "could not use"),
        ("slow", "did not answer within 3 s"),
    ],
)
async def test_fault_becomes_a_clear_message_and_the_next_turn_works(
    server: FaultyServer, tmp_path: Path, mode: Any, expected: str
) -> None:
    service = await start(tmp_path, endpoint(server))
    try:
        server.mode = mode
        started = time.monotonic()
        events = await turn(service, "hello")
        assert time.monotonic() - started < 3.0 + 3, "the user heard back within the timeout"
        assert isinstance(events[-1], TurnFailed) and expected in events[-1].message, events[-1]
        server.mode = "ok"
        events = await turn(service, "again")
        assert events[-1] == TurnFinished("echo: again")
        roles = [role for role, _ in await service.history("t")]
        assert roles == ["user", "assistant", "user", "assistant"]
    finally:
        await service.aclose()


@pytest.mark.parametrize("mode", ["broken_stream", "malformed_stream"])
async def test_stream_that_breaks_mid_answer_is_marked_interrupted(
    server: FaultyServer, tmp_path: Path, mode: Any
) -> None:
    service = await start(tmp_path, endpoint(server))
    try:
        server.script = [mode]  # no specialist is configured, so the first call is the streamed answer
        events = await turn(service, "one two three four five six")
        failed = events[-1]
        assert isinstance(failed, TurnFailed), failed
        history = await service.history("t")
        assert history[-1][0] == "assistant" and "interrupted" in history[-1][1]
        if mode == "broken_stream":
            assert failed.partial.startswith("echo:"), "what streamed before the break is kept"
            assert history[-1][1].startswith("echo:")
    finally:
        await service.aclose()


async def test_circuit_opens_after_repeated_outages(server: FaultyServer, tmp_path: Path) -> None:
    service = await start(tmp_path, endpoint(server))
    try:
        server.mode = "error500"
        for _ in range(3):
            await turn(service, "x")
        seen = server.requests
        events = await turn(service, "x")
        assert server.requests == seen, "an open circuit does not call the dead server"
        assert isinstance(events[-1], TurnFailed) and "paused calls" in events[-1].message
        assert service.model_health()["supervisor"] == "open"
    finally:
        await service.aclose()


async def test_fifty_sessions_while_the_code_server_fails(tmp_path: Path) -> None:
    """Bounded loopback load: 50 sessions x 4 turns, half of them to a failing code server."""
    async with faulty_server() as supervisor, faulty_server("error500") as code:
        service = await start(tmp_path, endpoint(supervisor, timeout=10), endpoint(code, timeout=10))
        try:

            async def session(n: int) -> list[tuple[str, TurnEvent]]:
                seen = []
                for t in range(4):
                    text = f"session-{n} turn-{t}"
                    request = f"/code {text}" if t % 2 else text
                    events = await turn(service, request, thread=f"thread-{n}")
                    seen.append((text, events[-1]))
                return seen

            results = await asyncio.wait_for(asyncio.gather(*(session(n) for n in range(50))), timeout=120)
            for n, seen in enumerate(results):
                assert len(seen) == 4, "no lost turns"
                for text, last in seen:
                    if isinstance(last, TurnFinished) and last.content.startswith("echo:"):
                        assert last.content == f"echo: {text}", "a session only ever gets its own answer"
                    else:
                        # the failing code server: a readable message, as the forwarded answer
                        assert isinstance(last, TurnFinished), last
                        assert "HTTP 500" in last.content or "paused calls" in last.content, last
                history = await service.history(f"thread-{n}")
                assert len(history) == 8
                assert all(f"session-{n} " in text for role, text in history if role == "user")
        finally:
            await service.aclose()
