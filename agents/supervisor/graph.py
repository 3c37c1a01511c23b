"""The supervisor graph: route -> specialists (concurrently) -> forward or write the final answer.

A turn has no open-ended loop: the decision names at most `max_specialists_per_turn` tasks, so a
turn costs at most that many specialist calls plus two supervisor calls. A single specialist's
answer is forwarded as the final answer (its tokens already streamed), never re-generated.

Every node reports what happens as typed events (`agents.supervisor.events`) through LangGraph's
custom stream; a model's tokens become events through a callback bound to the step (or the answer)
they belong to.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents.specialists.base import SpecialistResult, TurnContext
from agents.specialists.registry import Registry
from agents.supervisor.decision import Router
from agents.supervisor.events import (
    Answer,
    AnswerToken,
    Decided,
    GraphEvent,
    Notice,
    StepFinished,
    StepStarted,
    StepToken,
)
from agents.supervisor.prompts import (
    ANSWER_SYSTEM_PROMPT,
    NOTICE_UNAVAILABLE,
    REPORT_TEMPLATE,
    SYNTHESIS_SYSTEM_PROMPT,
)
from agents.supervisor.router import Cascade, Facts, FastStage, turn_facts
from agents.supervisor.state import (
    RunContext,
    SupervisorState,
    Task,
    TaskOutcome,
    attachment_names,
    estimated_tokens,
    fitting,
    for_model,
)
from core.errors import EnsembleError, describe_server_error
from core.models import ModelClient
from core.settings import Settings

log = logging.getLogger(__name__)

NO_SUPERVISOR = (
    "No supervisor model is configured, so I can only run specialists by command (e.g. `/code ...`). "
    "Set ENSEMBLE_SUPERVISOR__BASE_URL to an OpenAI-compatible server, or ENSEMBLE_LOCAL_LLM__ENABLED=on "
    "for the embedded local model."
)

# Context-window arithmetic (`SupervisorNodes._history`): an answer's tokens when the endpoint sets none, and
# room kept for the routing prompt and the chat template's own tokens.
DEFAULT_ANSWER_TOKENS = 512
PROMPT_MARGIN_TOKENS = 400

# Tokens that a model streams within this time of the last token event travel as one event (TokenEvents).
TOKEN_WINDOW_SECONDS = 0.05

# Recalls what the app knows about the user, as text for the answer prompt ("" for nothing).
Recall = Callable[[RunContext, str], Awaitable[str]]
# Whether the user has documents the documents specialist could search (asked once per turn).
Scope = Callable[[RunContext], Awaitable[bool]]
Write = Callable[[GraphEvent], None]


class TokenEvents(BaseCallbackHandler):
    """Writes the tokens a model streams as events: `AnswerToken`, or `StepToken` of one step.

    The first token goes at once; tokens that come within `window` of the last event travel together
    in the next one (a timer sends what waits), so a turn's tokens cross the event pipeline as ~10
    events a second, not one per token (the chat shows at most 10 updates a second anyway).
    Synchronous and run inline: LangChain calls it once per token on the event loop's thread.
    """

    run_inline = True

    def __init__(self, write: Write, step_id: str | None = None, window: float = TOKEN_WINDOW_SECONDS) -> None:
        self._write = write
        self._step_id = step_id
        self._window = window
        self._pending: list[str] = []
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        if not isinstance(token, str) or not token:
            return
        self._pending.append(token)
        loop = asyncio.get_running_loop()
        if loop.time() - self._last >= self._window:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_at(self._last + self._window, self.flush)

    def flush(self) -> None:
        """Write what waits as one event."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._last = asyncio.get_running_loop().time()
        self._write(AnswerToken(text) if self._step_id is None else StepToken(self._step_id, text))

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.flush()

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.flush()


def streaming(config: RunnableConfig, write: Write, *, step_id: str | None = None, run_name: str) -> RunnableConfig:
    """`config` (a node's) for a model call whose tokens the chat shows: as the answer, or in one step."""
    return merge_configs(config, {"callbacks": [TokenEvents(write, step_id)], "run_name": run_name})


def _last_user_text(messages: Sequence[AnyMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def _answered(write: Write, message: AIMessage) -> dict[str, Any]:
    """The state update that ends a turn with `message` as its answer, announced once as `Answer`."""
    write(Answer(message.text))
    return {"messages": [message]}


class SupervisorNodes:
    """The nodes of the graph, bound to what they need (built once at startup)."""

    def __init__(
        self,
        *,
        settings: Settings,
        registry: Registry,
        supervisor: ModelClient | None,
        recall: Recall | None = None,
        fast: FastStage | None = None,
        documents_in_scope: Scope | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._supervisor = supervisor
        self._router = None if supervisor is None else Router(supervisor, settings)
        self._recall = recall
        self._fast = fast
        self._documents_in_scope = documents_in_scope
        embedded = supervisor is not None and supervisor.endpoint.base_url == settings.local_llm.base_url
        self._cascade = Cascade(settings, self._router, fast, embedded=embedded)

    def _history(self, state: SupervisorState, prompt: str = "") -> list[AnyMessage]:
        """The chat's last `history_messages` messages, fewer where the supervisor's context window is
        set and they would not fit beside `prompt` and the answer."""
        messages = for_model(list(state.get("messages", []))[-self._settings.history_messages :])
        endpoint = self._supervisor.endpoint if self._supervisor is not None else None
        if endpoint is None or endpoint.context_tokens is None:
            return messages
        reserved = (endpoint.max_tokens or DEFAULT_ANSWER_TOKENS) + estimated_tokens(prompt) + PROMPT_MARGIN_TOKENS
        return fitting(messages, max(endpoint.context_tokens - reserved, 64))

    def _supervisor_error(self, exc: Exception) -> EnsembleError:
        assert self._supervisor is not None
        what = f"The supervisor model ({self._supervisor.where})"
        text = describe_server_error(exc, what=what, timeout=self._supervisor.endpoint.timeout)
        if text is None:
            log.warning("unusable reply from the supervisor model", exc_info=exc)
            text = f"{what} sent a reply that Ensemble could not use ({type(exc).__name__}: {str(exc)[:120]})."
        return EnsembleError(text)

    async def _facts(self, state: SupervisorState, context: RunContext) -> Facts:
        """What is attached and what applies: an image in this message or the one before, the user's documents."""
        # the deployment's specialists, then this user's own (connected MCP servers), for this run only
        available = [entry.spec for entry in (*self._registry.available.values(), *context.connected)]
        messages = list(state.get("messages", []))
        users = [m for m in messages if isinstance(m, HumanMessage)][-2:]
        recent = {name for message in users for name in attachment_names(message)}
        images = {f.name for f in state.get("files", []) if f.kind == "image"}
        recent_image = bool(recent & images) or any(f.kind == "image" for f in context.files)
        wants_documents = any("documents" in spec.needs for spec in available)
        documents = False
        if wants_documents and self._documents_in_scope is not None:
            documents = await self._documents_in_scope(context)
        tables = any(f.kind == "table" for f in (*state.get("files", []), *context.files))
        return turn_facts(
            available, new_files=context.files, recent_image=recent_image, documents=documents, tables=tables
        )

    async def route(
        self, state: SupervisorState, runtime: Runtime[RunContext]
    ) -> Command[Literal["specialists", "answer", "__end__"]]:
        """Decide: a command, an unmistakable phrase, then the cascade (facts, the fast classifier, the
        model when unsure); the `Decided` event says which stage chose, how sure it was and how long it took."""
        write: Write = get_stream_writer()
        config = get_config()  # this node's: model calls made with it belong to the node's run
        started = time.perf_counter()
        text = _last_user_text(state.get("messages", []))

        connected = runtime.context.connected  # this user's own specialists, for this run only
        command = self._registry.by_command(text, connected)
        if command is not None:
            spec, argument = command
            available = self._registry.get(spec.name, connected) is not None
            write(Decided((spec.name,) if available else (), "command", time.perf_counter() - started, 1.0))
            if available:
                return Command(goto="specialists", update={"tasks": [Task(spec.name, argument, "command")]})
            off = AIMessage(content=NOTICE_UNAVAILABLE.format(title=spec.title, hint=spec.enable_hint))
            return Command(goto="__end__", update=_answered(write, off))  # the notice is the answer: said once

        direct = self._registry.routed_directly(text)[:1]
        if direct:
            write(Decided((direct[0].name,), "phrase", time.perf_counter() - started, 1.0))
            return Command(goto="specialists", update={"tasks": [Task(direct[0].name, text, "phrase")]})

        notices = [
            NOTICE_UNAVAILABLE.format(title=spec.title, hint=spec.enable_hint)
            for spec in self._registry.unavailable_asked_for(text)
        ]
        if self._router is None and self._fast is None:  # the notices, or why there is no other answer
            only = AIMessage(content="\n\n".join(notices) or NO_SUPERVISOR)
            return Command(goto="__end__", update=_answered(write, only))
        for notice in notices:
            write(Notice(notice))

        # Recall starts now, beside the decision (most turns are answered directly, with what it finds);
        # a turn handed to specialists drops it.
        recalling = asyncio.ensure_future(self._recall(runtime.context, text)) if self._recall is not None else None
        try:
            return await self._decide(state, runtime.context, text, notices, recalling, config, write)
        finally:
            if recalling is not None and not recalling.done():
                recalling.cancel()

    async def _decide(
        self,
        state: SupervisorState,
        context: RunContext,
        text: str,
        notices: list[str],
        recalling: asyncio.Future[str] | None,
        config: RunnableConfig,
        write: Write,
    ) -> Command[Literal["specialists", "answer", "__end__"]]:
        """The cascade's decision (`route` after commands and phrases), with recall running beside it."""
        facts = await self._facts(state, context)
        routed, _ = await self._cascade.quick(text, facts)
        memories: str | None = None
        if routed is None:
            memories = await recalling if recalling is not None else ""
            answer = streaming(config, write, run_name="supervisor.route")
            try:
                routed = await self._cascade.by_model(self._history(state), facts, text, memories, answer=answer)
            except EnsembleError:
                raise
            except Exception as exc:
                raise self._supervisor_error(exc) from exc
        write(
            Decided(
                routed.specialists,
                routed.chosen_by,
                routed.seconds,
                routed.confidence,
                attempts=routed.attempts,
                fell_back=routed.fell_back,
            )
        )
        if routed.answer is not None and routed.answer.text.strip():
            return Command(goto="__end__", update=_answered(write, routed.answer))
        if routed.tasks:  # without a supervisor to combine reports, one specialist answers
            tasks = list(routed.tasks) if self._supervisor is not None else list(routed.tasks)[:1]
            return Command(goto="specialists", update={"tasks": tasks})
        if self._supervisor is None:  # nobody to answer directly
            only = AIMessage(content="\n\n".join(notices) or NO_SUPERVISOR)
            return Command(goto="__end__", update=_answered(write, only))
        if memories is None:
            memories = await recalling if recalling is not None else ""
        return Command(goto="answer", update={"memories": memories})

    async def specialists(
        self, state: SupervisorState, runtime: Runtime[RunContext]
    ) -> Command[Literal["answer", "__end__"]]:
        """Run the turn's tasks concurrently, each as a visible step."""
        write: Write = get_stream_writer()
        config = get_config()  # this node's: model calls made with it belong to the node's run
        tasks = list(state.get("tasks", []))
        forward = len(tasks) == 1
        ctx = TurnContext(
            user_id=runtime.context.user_id,
            thread_id=runtime.context.thread_id,
            files=tuple(state.get("files", [])),
            new_files=runtime.context.files,
        )

        async def run(index: int, task: Task) -> TaskOutcome:
            entry = self._registry.get(task.specialist, runtime.context.connected)
            assert entry is not None, task.specialist
            step_id = f"{task.specialist}-{index}-{uuid.uuid4().hex[:8]}"
            write(StepStarted(step_id, task.specialist, entry.spec.title, task.request))
            # A forwarded answer streams as the answer; otherwise the step's tokens stay in the step.
            step_config = streaming(
                config, write, step_id=None if forward else step_id, run_name=f"specialist.{task.specialist}"
            )
            started = time.perf_counter()
            try:
                result = await entry.specialist.run(task.request, ctx, step_config)
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
            write(StepFinished(step_id, task.specialist, result.content, result.error, seconds, result.artifacts))
            return TaskOutcome(task=task, content=result.content, error=result.error, seconds=seconds)

        outcomes = list(await asyncio.gather(*(run(i, t) for i, t in enumerate(tasks))))
        if forward:
            forwarded = AIMessage(content=outcomes[0].content, name=outcomes[0].task.specialist)
            return Command(goto="__end__", update=_answered(write, forwarded))
        return Command(goto="answer", update={"outcomes": outcomes})

    async def answer(self, state: SupervisorState) -> Command[Literal["__end__"]]:
        """Write the final answer, streaming: directly, or from the specialists' reports."""
        assert self._supervisor is not None, "without a supervisor model, `route` ends the turn itself"
        write: Write = get_stream_writer()
        config = get_config()  # this node's: model calls made with it belong to the node's run
        outcomes: list[TaskOutcome] = list(state.get("outcomes", []))
        model = self._supervisor.model_name
        if outcomes:
            nonce = secrets.token_hex(6)
            reports = "\n".join(
                REPORT_TEMPLATE.format(
                    nonce=nonce,
                    name=o.task.specialist,
                    status="failed" if o.error else "ok",
                    content=o.content.replace(nonce, "······"),
                )
                for o in outcomes
            )
            template = self._settings.prompt("supervisor.synthesis", model, SYNTHESIS_SYSTEM_PROMPT)
            system = template.format(reports=reports, nonce=nonce)
        else:
            memories = state.get("memories", "")
            template = self._settings.prompt("supervisor.answer", model, ANSWER_SYSTEM_PROMPT)
            system = template.format(memories=f"\n\n{memories}" if memories else "")
        messages: list[AnyMessage] = [SystemMessage(system), *self._history(state, system)]
        try:
            reply = await self._supervisor.llm.ainvoke(messages, streaming(config, write, run_name="supervisor.answer"))
        except Exception as exc:
            raise self._supervisor_error(exc) from exc
        return Command(goto="__end__", update=_answered(write, AIMessage(content=reply.text.strip())))


def build_graph(
    *,
    settings: Settings,
    registry: Registry,
    supervisor: ModelClient | None,
    checkpointer: BaseCheckpointSaver[Any] | None,
    recall: Recall | None = None,
    fast: FastStage | None = None,
    documents_in_scope: Scope | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the supervisor graph (once, at startup)."""
    nodes = SupervisorNodes(
        settings=settings,
        registry=registry,
        supervisor=supervisor,
        recall=recall,
        fast=fast,
        documents_in_scope=documents_in_scope,
    )
    graph = StateGraph(SupervisorState, context_schema=RunContext)
    graph.add_node("route", nodes.route)
    graph.add_node("specialists", nodes.specialists)
    graph.add_node("answer", nodes.answer)
    graph.add_edge(START, "route")
    return graph.compile(checkpointer=checkpointer, name="ensemble-supervisor")
