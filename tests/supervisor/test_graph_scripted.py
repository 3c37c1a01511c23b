"""Routing and graph logic of the supervisor, with scripted chat models (no server behind them)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import SpecialistDeps, SpecialistResult, SpecialistSpec, TurnContext
from agents.supervisor.service import (
    AnswerToken,
    EnsembleService,
    Notice,
    StepFinished,
    StepStarted,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from core.models import ModelClients
from core.settings import Settings, StructuredOutput
from tests.support.scripted import ScriptedChatModel, scripted_client, tool_call


class RecordingSpecialist:
    """A specialist that answers from a fixed text and records its requests."""

    def __init__(self, name: str, answer: str, *, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.name = name
        self.answer = answer
        self.fail = fail
        self.delay = delay
        self.requests: list[str] = []
        self.contexts: list[TurnContext] = []

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        self.requests.append(request)
        self.contexts.append(ctx)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return SpecialistResult(content=self.answer)


def spec_for(name: str, specialist: RecordingSpecialist | None, *, asks_for: str = r"(?!)") -> SpecialistSpec:
    return SpecialistSpec(
        name=name,
        title=name.title(),
        description=f"does {name} things",
        enable_hint=f"set ENSEMBLE_{name.upper()}__BASE_URL",
        asks_for=re.compile(asks_for, re.I),
        build=lambda deps: specialist,
        command=f"/{name}",
    )


async def start(
    tmp_path: Path,
    llm: ScriptedChatModel | None,
    specs: list[SpecialistSpec],
    mode: StructuredOutput = "json_object",
    **overrides: Any,
) -> EnsembleService:
    settings = Settings(data_dir=tmp_path, _env_file=None, **overrides)  # type: ignore[call-arg]
    supervisor = None if llm is None else scripted_client(llm, mode)
    models = ModelClients(supervisor=supervisor, code=None, vision=None)
    return await EnsembleService.start(settings, models=models, specs=specs, with_documents=False, with_memory=False)


async def run_turn(service: EnsembleService, text: str, thread: str = "t1", user: str = "u1") -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id=thread, user_id=user, text=text)]


def decision(*tasks: tuple[str, str]) -> AIMessage:
    return AIMessage(content=json.dumps({"tasks": [{"specialist": s, "request": r} for s, r in tasks]}))


@pytest.fixture
async def service_factory(tmp_path: Path) -> AsyncIterator[Any]:
    services: list[EnsembleService] = []

    async def make(*args: Any, **kwargs: Any) -> EnsembleService:
        service = await start(tmp_path, *args, **kwargs)
        services.append(service)
        return service

    yield make
    for service in services:
        await service.aclose()


async def test_scripted_direct_answer_streams_tokens(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(), AIMessage(content="Hello there, friend.")])
    code = RecordingSpecialist("code", "unused")
    service = await service_factory(llm, [spec_for("code", code)])
    events = await run_turn(service, "hi")
    tokens = [e.text for e in events if isinstance(e, AnswerToken)]
    assert len(tokens) > 1, "the answer should arrive as several streamed tokens"
    assert "".join(tokens) == "Hello there, friend."
    assert events[-1] == TurnFinished("Hello there, friend.")
    assert code.requests == []
    # the decision was grammar-constrained JSON with the specialists as an enum
    fmt = llm.call_kwargs[0]["response_format"]
    assert fmt["type"] == "json_object"
    assert fmt["schema"]["properties"]["tasks"]["items"]["properties"]["specialist"]["enum"] == ["code"]


async def test_scripted_single_handoff_is_forwarded_not_regenerated(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(("code", "write fizzbuzz in python"))])
    code = RecordingSpecialist("code", "```python\nprint('fizz')\n```")
    service = await service_factory(llm, [spec_for("code", code)])
    events = await run_turn(service, "fizzbuzz please")
    assert code.requests == ["write fizzbuzz in python"]
    started = [e for e in events if isinstance(e, StepStarted)]
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [(s.specialist, s.input) for s in started] == [("code", "write fizzbuzz in python")]
    assert finished[0].output == code.answer and not finished[0].error and finished[0].seconds >= 0
    assert events[-1] == TurnFinished(code.answer)
    assert len(llm.calls) == 1, "a forwarded answer costs no second supervisor call"


async def test_scripted_checkpoints_hold_only_allowed_types(service_factory: Any, caplog: Any) -> None:
    """Hand-off state (tasks, outcomes) is read back from the checkpoint without LangGraph's
    'unregistered type' warning, which future versions turn into a refusal."""
    llm = ScriptedChatModel(script=[decision(("code", "one")), decision(("code", "two"))])
    code = RecordingSpecialist("code", "done")
    service = await service_factory(llm, [spec_for("code", code)])
    caplog.set_level(logging.WARNING)
    await run_turn(service, "first")
    await run_turn(service, "second")  # loads the first turn's checkpoint, Task and TaskOutcome included
    assert code.requests == ["one", "two"]
    assert not [r for r in caplog.records if "unregistered type" in r.getMessage()]


async def test_scripted_malformed_decision_retried_once_then_used(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[AIMessage(content="{not json"), decision(("code", "x"))])
    code = RecordingSpecialist("code", "done")
    service = await service_factory(llm, [spec_for("code", code)])
    events = await run_turn(service, "code x")
    assert code.requests == ["x"]
    assert events[-1] == TurnFinished("done")
    retry_prompt = llm.calls[1][-1]
    assert isinstance(retry_prompt, HumanMessage) and "could not be used" in retry_prompt.text


async def test_scripted_two_bad_decisions_fall_back_to_direct_answer(service_factory: Any) -> None:
    llm = ScriptedChatModel(
        script=[decision(("nonexistent", "x")), AIMessage(content="[]"), AIMessage(content="I will answer myself.")]
    )
    code = RecordingSpecialist("code", "unused")
    service = await service_factory(llm, [spec_for("code", code)])
    events = await run_turn(service, "something")
    assert code.requests == []
    assert events[-1] == TurnFinished("I will answer myself.")
    assert len(llm.calls) == 3


async def test_scripted_tools_mode_tool_call_hands_off(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[AIMessage(content="", tool_calls=[tool_call("ask_code", request="sort a list")])])
    code = RecordingSpecialist("code", "sorted(xs)")
    service = await service_factory(llm, [spec_for("code", code)], mode="tools")
    events = await run_turn(service, "how do I sort")
    assert code.requests == ["sort a list"]
    assert events[-1] == TurnFinished("sorted(xs)")
    tools = llm.call_kwargs[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["ask_code"]


async def test_scripted_tools_mode_plain_reply_is_the_answer_in_one_call(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[AIMessage(content="Paris is the capital of France.")])
    service = await service_factory(llm, [spec_for("code", RecordingSpecialist("code", ""))], mode="tools")
    events = await run_turn(service, "capital of France?")
    assert "".join(e.text for e in events if isinstance(e, AnswerToken)) == "Paris is the capital of France."
    assert events[-1] == TurnFinished("Paris is the capital of France.")
    assert len(llm.calls) == 1


async def test_scripted_tools_mode_invalid_arguments_retry_then_fallback(service_factory: Any) -> None:
    bad = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "ask_code", "args": "{broken", "id": "b1", "error": "bad json", "type": "invalid_tool_call"}
        ],
    )
    llm = ScriptedChatModel(script=[bad, bad.model_copy(), AIMessage(content="Direct answer.")])
    code = RecordingSpecialist("code", "unused")
    service = await service_factory(llm, [spec_for("code", code)], mode="tools")
    events = await run_turn(service, "do it")
    assert code.requests == []
    assert events[-1] == TurnFinished("Direct answer.")


async def test_scripted_several_specialists_run_concurrently_then_synthesis(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(("code", "a"), ("search", "b")), AIMessage(content="Both done.")])
    code = RecordingSpecialist("code", "code report", delay=0.3)
    search = RecordingSpecialist("search", "search report", delay=0.3)
    service = await service_factory(llm, [spec_for("code", code), spec_for("search", search)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await run_turn(service, "two things")
    assert loop.time() - started < 0.55, "the two 0.3 s specialists should overlap"
    assert events[-1] == TurnFinished("Both done.")
    synthesis_system = llm.calls[1][0]
    assert isinstance(synthesis_system, SystemMessage)
    assert "code report" in synthesis_system.text and "search report" in synthesis_system.text


async def test_scripted_hand_offs_are_bounded_per_turn(service_factory: Any) -> None:
    many = decision(*[("code", f"task {i}") for i in range(6)])
    llm = ScriptedChatModel(script=[many, AIMessage(content="ok")])
    code = RecordingSpecialist("code", "r")
    service = await service_factory(llm, [spec_for("code", code)], max_specialists_per_turn=2)
    await run_turn(service, "lots")
    assert code.requests == ["task 0", "task 1"]


async def test_scripted_unavailable_command_names_the_setting_without_a_model_call(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[])
    service = await service_factory(llm, [spec_for("search", None)])
    events = await run_turn(service, "/search latest news")
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert notices and "ENSEMBLE_SEARCH__BASE_URL" in notices[0]
    assert isinstance(events[-1], TurnFinished) and "ENSEMBLE_SEARCH__BASE_URL" in events[-1].content
    assert llm.calls == []


async def test_scripted_request_for_unavailable_specialist_gets_notice_and_answer(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(), AIMessage(content="I cannot browse.")])
    specs = [spec_for("code", RecordingSpecialist("code", "")), spec_for("search", None, asks_for=r"search the web")]
    service = await service_factory(llm, specs)
    events = await run_turn(service, "Please search the web for llamas")
    assert any(isinstance(e, Notice) and "ENSEMBLE_SEARCH__BASE_URL" in e.text for e in events)
    # the unavailable specialist is not offered to the model
    fmt = llm.call_kwargs[0]["response_format"]
    assert fmt["schema"]["properties"]["tasks"]["items"]["properties"]["specialist"]["enum"] == ["code"]


async def test_scripted_specialist_crash_becomes_a_readable_step_error(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(("code", "x"))])
    code = RecordingSpecialist("code", "", fail=RuntimeError("boom"))
    service = await service_factory(llm, [spec_for("code", code)])
    events = await run_turn(service, "x")
    finished = next(e for e in events if isinstance(e, StepFinished))
    assert finished.error and "Code specialist failed" in finished.output
    assert isinstance(events[-1], TurnFinished)


async def test_scripted_supervisor_server_error_is_readable_and_chat_stays_usable(service_factory: Any) -> None:
    import httpx

    request = httpx.Request("POST", "http://scripted.invalid/v1/chat/completions")
    llm = ScriptedChatModel(
        script=[openai.APIConnectionError(request=request), decision(), AIMessage(content="Back again.")]
    )
    service = await service_factory(llm, [spec_for("code", RecordingSpecialist("code", ""))])
    events = await run_turn(service, "first")
    assert isinstance(events[-1], TurnFailed)
    assert "Could not reach The supervisor model" in events[-1].message
    events = await run_turn(service, "second")
    assert events[-1] == TurnFinished("Back again.")
    history = await service.history("t1")
    assert [role for role, _ in history] == ["user", "assistant", "user", "assistant"]
    assert "interrupted" in history[1][1]


async def test_scripted_turns_of_one_chat_share_history_and_chats_are_separate(service_factory: Any) -> None:
    llm = ScriptedChatModel(
        script=[
            decision(),
            AIMessage(content="Nice to meet you, Ada."),
            decision(),
            AIMessage(content="You are Ada."),
            decision(),
            AIMessage(content="I don't know."),
        ]
    )
    service = await service_factory(llm, [spec_for("code", RecordingSpecialist("code", ""))])
    await run_turn(service, "I am Ada", thread="chat-a")
    await run_turn(service, "who am I?", thread="chat-a")
    answer_call = llm.calls[3]
    assert any("I am Ada" in m.text for m in answer_call)
    await run_turn(service, "who am I?", thread="chat-b")
    assert not any("I am Ada" in m.text for m in llm.calls[5])


async def test_scripted_cancelled_turn_is_recorded_as_interrupted(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[decision(("code", "slow")), decision(), AIMessage(content="fine")])
    code = RecordingSpecialist("code", "never", delay=30)
    service = await service_factory(llm, [spec_for("code", code)])

    async def consume() -> None:
        async for _ in service.stream_turn(thread_id="t1", user_id="u1", text="slow one"):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    history = await service.history("t1")
    assert history[-1][0] == "assistant" and "interrupted" in history[-1][1]
    assert history[-2] == ("user", "slow one"), "the question of the stopped turn is kept"
    events = await run_turn(service, "next")
    assert events[-1] == TurnFinished("fine")


async def test_scripted_no_supervisor_model_says_how_to_enable_one(service_factory: Any) -> None:
    service = await service_factory(None, [spec_for("code", RecordingSpecialist("code", "ran"))])
    events = await run_turn(service, "hello")
    assert isinstance(events[-1], TurnFinished) and "ENSEMBLE_SUPERVISOR__BASE_URL" in events[-1].content
    events = await run_turn(service, "/code print hi", thread="t2")
    assert events[-1] == TurnFinished("ran")


def test_registry_unavailable_specialist_is_not_offered(tmp_path: Path) -> None:
    from agents.specialists.registry import Registry

    deps = SpecialistDeps(Settings(data_dir=tmp_path, _env_file=None), ModelClients(None, None, None), None)  # type: ignore[arg-type,call-arg]
    registry = Registry.build(deps, [spec_for("code", RecordingSpecialist("code", "")), spec_for("search", None)])
    assert list(registry.available) == ["code"]
    assert list(registry.unavailable) == ["search"]
    spec, rest = registry.by_command("/SEARCH  cats") or (None, "")
    assert spec is not None and spec.name == "search" and rest == "cats"
    assert registry.by_command("no command here") is None


async def test_scripted_direct_phrase_routes_without_the_model(service_factory: Any) -> None:
    llm = ScriptedChatModel(script=[])
    memory = RecordingSpecialist("memory", "You told me: nothing yet.")
    spec = spec_for("memory", memory, asks_for=r"\bforget everything\b")
    spec = SpecialistSpec(**{**spec.__dict__, "routes_directly": True})
    service = await service_factory(llm, [spec_for("code", RecordingSpecialist("code", "")), spec])
    events = await run_turn(service, "Please forget everything")
    assert memory.requests == ["Please forget everything"]
    assert events[-1] == TurnFinished("You told me: nothing yet.")
    assert llm.calls == []
