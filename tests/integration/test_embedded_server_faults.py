"""The embedded model server dies (SIGILL, as a native llama.cpp build does here; SIGKILL mid-stream):
the chat says why, the server is restarted, the next turn works and nothing stored is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.runtime import Ensemble
from agents.supervisor.events import AnswerToken, TurnEvent, TurnFailed, TurnFinished
from core.local_llm import LocalLLMServer, describe_exit
from core.settings import ChatEndpoint, LocalLLMSettings, Settings
from tests.conftest import free_port

pytestmark = pytest.mark.llm

LONG_CODE_REQUEST = "/code Write a Python module with ten functions, each with a docstring and an example."


@pytest.fixture
async def owned(tmp_path: Path) -> AsyncIterator[Ensemble]:
    """A service that starts and supervises its own embedded server (on a port nobody else uses)."""
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, local_llm=LocalLLMSettings(port=free_port(), startup_timeout=120), _env_file=None
    )
    service = await Ensemble.start(settings, with_documents=False, with_memory=False)
    try:
        yield service
    finally:
        await service.aclose()


def server_of(service: Ensemble) -> LocalLLMServer:
    assert service.local_llm is not None, "the service supervises the embedded server"
    return service.local_llm


async def turn(service: Ensemble, text: str, thread: str = "t") -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id=thread, user_id="u", text=text)]


async def wait_for_state(server: LocalLLMServer, state: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while server.status().state != state:
        assert time.monotonic() < deadline, f"still {server.status()} after {seconds} s"
        await asyncio.sleep(0.1)


async def test_a_turn_before_the_server_is_ready_says_it_is_starting(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, local_llm=LocalLLMSettings(port=free_port()), _env_file=None
    )
    service = await Ensemble.start(settings, with_documents=False, with_memory=False)
    try:
        status = server_of(service).status()
        assert not status.ready and status.state in ("not started", "starting", "self-test"), status
        events = await turn(service, "/code print hello")
        if not server_of(service).status().ready:  # it may have become ready while the turn ran
            text = " ".join(getattr(e, "output", "") or getattr(e, "content", "") or "" for e in events)
            assert "embedded model server" in text and ("starting" in text or "checking itself" in text), events
    finally:
        await service.aclose()


async def test_sigkill_mid_stream_is_reported_and_the_next_turn_works(owned: Ensemble) -> None:
    server = server_of(owned)
    assert await server.wait_ready(120), server.status()
    first_pid = server.pid
    assert first_pid is not None

    events: list[TurnEvent] = []
    async for event in owned.stream_turn(thread_id="t", user_id="u", text=LONG_CODE_REQUEST):
        events.append(event)
        if isinstance(event, AnswerToken) and len(events) < 50 and server.pid == first_pid:
            os.kill(first_pid, signal.SIGKILL)
    # a specialist's failure is its answer (a readable message), as for any other specialist server
    final = events[-1]
    assert isinstance(final, TurnFinished), final
    assert "crashed" in final.content and "SIGKILL" in final.content, final.content
    assert str(server.log_path) in final.content, "the user is told where the log is"

    await wait_for_state(server, "ready")
    assert server.pid not in (None, first_pid) and server.status().restarts == 1
    events = await turn(owned, "/code Write a Python function that adds two numbers.")
    assert isinstance(events[-1], TurnFinished) and events[-1].content.strip(), events[-1]
    history = await owned.history("t")
    assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"], "nothing stored is lost"
    assert "crashed" in history[1][1]


async def test_sigill_is_named_with_its_cause_and_the_server_comes_back(owned: Ensemble) -> None:
    server = server_of(owned)
    assert await server.wait_ready(120), server.status()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGILL)  # what a llama.cpp built for another CPU dies of
    await wait_for_state(server, "crashed", 10)
    detail = server.status().detail
    assert "SIGILL" in detail and "illegal instruction" in detail.lower() and "rebuild-llama" in detail, detail

    events = await turn(owned, "/code print hello")  # during the restart: the chat says what is going on
    text = " ".join(getattr(e, "output", "") or getattr(e, "message", "") or "" for e in events)
    if not server.status().ready:
        assert "embedded model server" in text, events
    await wait_for_state(server, "ready")
    events = await turn(owned, "/code Write a Python function that adds two numbers.", thread="t2")
    assert isinstance(events[-1], TurnFinished), events[-1]


async def test_a_configured_url_that_does_not_answer_is_called_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, supervisor=ChatEndpoint(base_url=url, model="m", timeout=5), _env_file=None
    )
    service = await Ensemble.start(settings, with_documents=False, with_memory=False)
    try:
        assert service.local_llm is None, "a configured supervisor switches the embedded server off"
        events = await turn(service, "hello")
        failed = events[-1]
        assert isinstance(failed, TurnFailed) and "Could not reach" in failed.message, failed
        assert f"m at {url}" in failed.message and "embedded" not in failed.message
    finally:
        await service.aclose()


def test_exit_statuses_are_described() -> None:
    assert describe_exit(1) == "exit status 1"
    assert describe_exit(-signal.SIGKILL).startswith("signal SIGKILL (killed")
    assert "illegal instruction" in describe_exit(-signal.SIGILL).lower()


async def test_a_port_taken_by_something_else_is_named_and_checked_again(tmp_path: Path) -> None:
    """Not an OpenAI server on the port: not-ready with the reason, and it is looked at again (no restarts)."""
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = LocalLLMServer(LocalLLMSettings(port=port, startup_timeout=1), tmp_path / "llm.log")
    try:
        server.launch()
        await wait_for_state(server, "failed", 30)
        assert "taken by something that is not an OpenAI-compatible server" in server.status().detail
        await asyncio.sleep(2.5)  # the first re-checks (1 s, then 2 s) have run
        assert server.status().restarts == 0 and server.pid is None and server._task is not None
        assert not server._task.done(), "it keeps looking instead of giving up"
    finally:
        await server.stop()
        sock.close()
