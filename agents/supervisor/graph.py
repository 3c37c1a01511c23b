"""The supervisor graph: route -> specialists (concurrently) -> forward or write the final answer.

A turn has no open-ended loop: the decision names at most `max_specialists_per_turn` tasks, so a
turn costs at most that many specialist calls plus two supervisor calls. A single specialist's
answer is forwarded as the final answer (its tokens already streamed), never re-generated.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents.specialists.base import SpecialistResult, TurnContext
from agents.specialists.registry import Registry
from agents.supervisor.decision import ANSWER_TAG, Router
from agents.supervisor.prompts import (
    ANSWER_SYSTEM_PROMPT,
    NOTICE_UNAVAILABLE,
    REPORT_TEMPLATE,
    SYNTHESIS_SYSTEM_PROMPT,
)
from agents.supervisor.state import RunContext, SupervisorState, Task, TaskOutcome
from core.errors import EnsembleError, describe_server_error
from core.models import ModelClient
from core.settings import Settings

log = logging.getLogger(__name__)

NO_SUPERVISOR = (
    "No supervisor model is configured, so I can only run specialists by command (e.g. `/code ...`). "
    "Set ENSEMBLE_SUPERVISOR__BASE_URL to an OpenAI-compatible server, or ENSEMBLE_LOCAL_LLM__ENABLED=on "
    "for the embedded local model."
)

# Recalls what the app knows about the user, as text for the answer prompt ("" for nothing).
Recall = Callable[[RunContext, str], Awaitable[str]]


def _last_user_text(messages: Sequence[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


class SupervisorNodes:
    """The nodes of the graph, bound to what they need (built once at startup)."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        supervisor: ModelClient | None,
        recall: Recall | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._supervisor = supervisor
        self._router = None if supervisor is None else Router(supervisor, settings)
        self._recall = recall

    def _history(self, state: SupervisorState) -> list[AnyMessage]:
        return list(state.get("messages", []))[-self._settings.history_messages :]

    def _supervisor_error(self, exc: Exception) -> EnsembleError:
        assert self._supervisor is not None
        what = f"The supervisor model ({self._supervisor.where})"
        text = describe_server_error(exc, what=what, timeout=self._supervisor.endpoint.timeout)
        if text is None:
            log.warning("unusable reply from the supervisor model", exc_info=exc)
            text = f"{what} sent a reply that Ensemble could not use ({type(exc).__name__}: {str(exc)[:120]})."
        return EnsembleError(text)

    async def route(
        self, state: SupervisorState, runtime: Runtime[RunContext]
    ) -> Command[Literal["specialists", "answer", "__end__"]]:
        """Decide: explicit command, direct answer, or hand-offs."""
        writer = get_stream_writer()
        text = _last_user_text(state.get("messages", []))
        notices: list[str] = []

        command = self._registry.by_command(text)
        if command is not None:
            spec, rest = command
            if spec.name in self._registry.available:
                return Command(goto="specialists", update={"tasks": [Task(spec.name, rest or text)]})
            notices.append(NOTICE_UNAVAILABLE.format(title=spec.title, hint=spec.enable_hint))
            for notice in notices:
                writer({"event": "notice", "text": notice})
            return Command(goto="answer", update={"tasks": [], "notices": notices})

        direct = self._registry.routed_directly(text)
        if direct:
            return Command(goto="specialists", update={"tasks": [Task(spec.name, text) for spec in direct[:1]]})

        for spec in self._registry.unavailable_asked_for(text):
            notices.append(NOTICE_UNAVAILABLE.format(title=spec.title, hint=spec.enable_hint))
        for notice in notices:
            writer({"event": "notice", "text": notice})

        memories = await self._recall(runtime.context, text) if self._recall is not None else ""
        specs = [entry.spec for entry in self._registry.available.values()]
        if self._router is None or not specs:
            return Command(goto="answer", update={"tasks": [], "notices": notices, "memories": memories})
        try:
            decision = await self._router.decide(self._history(state), specs, text, memories)
        except EnsembleError:
            raise
        except Exception as exc:
            raise self._supervisor_error(exc) from exc
        writer(
            {
                "event": "decision",
                "tasks": [asdict(t) for t in decision.tasks],
                "attempts": decision.attempts,
                "fell_back": decision.fell_back,
            }
        )
        if decision.answer is not None and decision.answer.text.strip():
            writer({"event": "final", "content": decision.answer.text})
            return Command(goto="__end__", update={"messages": [decision.answer], "notices": notices})
        if decision.tasks:
            return Command(goto="specialists", update={"tasks": list(decision.tasks), "notices": notices})
        return Command(goto="answer", update={"tasks": [], "notices": notices, "memories": memories})

    async def specialists(
        self, state: SupervisorState, runtime: Runtime[RunContext]
    ) -> Command[Literal["answer", "__end__"]]:
        """Run the turn's tasks concurrently, each as a visible step."""
        writer = get_stream_writer()
        tasks = list(state.get("tasks", []))
        forward = len(tasks) == 1
        ctx = TurnContext(
            user_id=runtime.context.user_id,
            thread_id=runtime.context.thread_id,
            files=tuple(state.get("files", [])),
            new_files=tuple(state.get("new_files", [])),
        )

        async def run(index: int, task: Task) -> TaskOutcome:
            entry = self._registry.get(task.specialist)
            assert entry is not None, task.specialist
            step_id = f"{task.specialist}-{index}-{uuid.uuid4().hex[:8]}"
            writer(
                {
                    "event": "step_start",
                    "step_id": step_id,
                    "specialist": task.specialist,
                    "title": entry.spec.title,
                    "input": task.request,
                }
            )
            tags = [f"step:{step_id}", *([ANSWER_TAG] if forward else [])]
            config: RunnableConfig = {"tags": tags, "run_name": f"specialist.{task.specialist}"}
            started = time.perf_counter()
            try:
                result = await entry.specialist.run(task.request, ctx, config)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("specialist %s failed", task.specialist)
                what = f"The {entry.spec.title} specialist's server"
                message = describe_server_error(exc, what=what) or (
                    f"The {entry.spec.title} specialist failed ({type(exc).__name__}); the error was logged."
                )
                result = SpecialistResult(content=message, error=True)
            seconds = time.perf_counter() - started
            writer(
                {
                    "event": "step_end",
                    "step_id": step_id,
                    "specialist": task.specialist,
                    "output": result.content,
                    "error": result.error,
                    "seconds": seconds,
                    "artifacts": [asdict(a) for a in result.artifacts],
                }
            )
            return TaskOutcome(task=task, content=result.content, error=result.error, seconds=seconds)

        outcomes = list(await asyncio.gather(*(run(i, t) for i, t in enumerate(tasks))))
        if forward:
            content = outcomes[0].content
            writer({"event": "final", "content": content})
            message = AIMessage(content=content, name=outcomes[0].task.specialist)
            return Command(goto="__end__", update={"outcomes": outcomes, "messages": [message]})
        return Command(goto="answer", update={"outcomes": outcomes})

    async def answer(self, state: SupervisorState, runtime: Runtime[RunContext]) -> Command[Literal["__end__"]]:
        """Write the final answer, streaming: directly, or from the specialists' reports."""
        writer = get_stream_writer()
        outcomes: list[TaskOutcome] = list(state.get("outcomes", []))
        notices = list(state.get("notices", []))
        text = _last_user_text(state.get("messages", []))
        command = self._registry.by_command(text)
        if self._supervisor is None or (command is not None and not outcomes and notices):
            content = "\n\n".join(notices) if notices else NO_SUPERVISOR
            writer({"event": "final", "content": content})
            return Command(goto="__end__", update={"messages": [AIMessage(content=content)]})

        model = self._supervisor.model_name
        if outcomes:
            reports = "\n".join(
                REPORT_TEMPLATE.format(name=o.task.specialist, status="failed" if o.error else "ok", content=o.content)
                for o in outcomes
            )
            template = self._settings.prompt("supervisor.synthesis", model, SYNTHESIS_SYSTEM_PROMPT)
            system = template.format(reports=reports)
        else:
            memories = state.get("memories", "")
            template = self._settings.prompt("supervisor.answer", model, ANSWER_SYSTEM_PROMPT)
            system = template.format(memories=f"\n\n{memories}" if memories else "")
        messages: list[AnyMessage] = [SystemMessage(system), *self._history(state)]
        llm = self._supervisor.llm.with_config(tags=[ANSWER_TAG], run_name="supervisor.answer")
        parts: list[str] = []
        try:
            async for chunk in llm.astream(messages):
                parts.append(chunk.text)
        except Exception as exc:
            raise self._supervisor_error(exc) from exc
        content = "".join(parts).strip()
        writer({"event": "final", "content": content})
        return Command(goto="__end__", update={"messages": [AIMessage(content=content)]})


def build_graph(
    *,
    settings: Settings,
    registry: Registry,
    supervisor: ModelClient | None,
    checkpointer: BaseCheckpointSaver[Any] | None,
    recall: Recall | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the supervisor graph (once, at startup)."""
    nodes = SupervisorNodes(settings=settings, registry=registry, supervisor=supervisor, recall=recall)
    graph = StateGraph(SupervisorState, context_schema=RunContext)
    graph.add_node("route", nodes.route)
    graph.add_node("specialists", nodes.specialists)
    graph.add_node("answer", nodes.answer)
    graph.add_edge(START, "route")
    return graph.compile(checkpointer=checkpointer, name="ensemble-supervisor")
