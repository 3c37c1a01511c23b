"""The agent layer's one entry point: start once, stream turns as typed events, close.

The UI talks only to `EnsembleService`; it never builds a model, a graph or a store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import httpx
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.graph.state import CompiledStateGraph

from agents.specialists.base import FileRef, SpecialistDeps, SpecialistSpec
from agents.specialists.registry import Registry
from agents.specialists.vision.images import ImageLimits, validate_image
from agents.supervisor.decision import ANSWER_TAG
from agents.supervisor.graph import Recall, build_graph
from agents.supervisor.state import CHECKPOINT_TYPES, RunContext
from core.errors import EnsembleError
from core.local_llm import LocalLLMServer, ServerStatus
from core.logs import quiet_library_noise
from core.models import ModelClient, ModelClients, model_http_client
from core.settings import Settings
from memory import MemoryService, as_memory_embedder, format_memories, open_memory_service
from memory.records import Memory
from rag.service import DocumentService
from rag.service import start as start_documents
from rag.types import IngestProgress, IngestResult, ProgressCallback

log = logging.getLogger(__name__)

__all__ = ["IngestProgress"]  # re-exported for the UI layer, with the events below

INTERRUPTED = "_[interrupted: {reason}]_"
DOCUMENTS_OFF = "Documents are not available in this deployment (the startup log says why)."
EMPTY_FILE = "“{name}” is empty (0 bytes): there is nothing in it to read, so it was not added."
NO_VISION = (
    "“{name}” is in the chat, but I cannot look at images in this deployment: no vision model is "
    "configured. To enable it, {hint}."
)


# --- events a turn streams to the UI -------------------------------------------------------------
@dataclass(frozen=True)
class AnswerToken:
    text: str


@dataclass(frozen=True)
class StepStarted:
    step_id: str
    specialist: str
    title: str
    input: str


@dataclass(frozen=True)
class StepToken:
    step_id: str
    text: str


@dataclass(frozen=True)
class StepFinished:
    step_id: str
    specialist: str
    output: str
    error: bool
    seconds: float
    artifacts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class TurnFinished:
    content: str
    artifacts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class TurnFailed:
    message: str
    partial: str = ""


TurnEvent = AnswerToken | StepStarted | StepToken | StepFinished | Notice | TurnFinished | TurnFailed


@dataclass(frozen=True)
class Uploads:
    """What came of a message's files: those the turn may use, and a message per file for the chat."""

    accepted: tuple[FileRef, ...]
    messages: tuple[str, ...]


def open_checkpointer(settings: Settings) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
    """SQLite file by default; PostgreSQL when ENSEMBLE_DATABASE_URL names one."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if url.startswith(("postgresql", "postgres")):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        conn = url.replace("postgresql+asyncpg://", "postgresql://").replace("postgresql+psycopg://", "postgresql://")
        return AsyncPostgresSaver.from_conn_string(conn, serde=serde)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _sqlite_checkpointer(settings.data_dir / "checkpoints.sqlite", serde)


@asynccontextmanager
async def _sqlite_checkpointer(path: Path, serde: SerializerProtocol) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(path)) as conn:
        # WAL (set by the saver) + NORMAL: no fsync per commit; an app crash loses nothing, a power cut
        # at most the last turns' checkpoints. ~0.3 ms less per commit, several commits a turn.
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield AsyncSqliteSaver(conn, serde=serde)


@dataclass
class EnsembleService:
    """The running supervisor: graph, registry, checkpointer and clients, built once."""

    settings: Settings
    registry: Registry
    graph: CompiledStateGraph[Any, Any, Any, Any]
    checkpointer: BaseCheckpointSaver[Any]
    _stack: AsyncExitStack = field(repr=False)
    documents: DocumentService | None = None
    memory: MemoryService | None = None
    models: ModelClients = field(default_factory=lambda: ModelClients(None, None, None))
    local_llm: LocalLLMServer | None = None  # the embedded model server, when this process supervises it
    _background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        extras: dict[str, Any] | None = None,
        recall: Recall | None = None,
        models: ModelClients | None = None,
        specs: Sequence[SpecialistSpec] | None = None,
        with_documents: bool = True,
        with_memory: bool = True,
    ) -> EnsembleService:
        """Build clients, specialists and the graph; open the checkpointer.

        `models` and `specs` replace the ones built from settings (tests, benchmarks, evaluation);
        `with_documents`/`with_memory` False leave those features (and their models) out.
        """
        quiet_library_noise()
        stack = AsyncExitStack()
        local_llm = None
        try:
            if models is None and settings.local_llm_active:
                # The embedded server starts in the background (its self-test takes a few seconds); until it
                # is ready, /readyz says so and a chat turn says it is starting.
                local_llm = LocalLLMServer(settings.local_llm, settings.data_dir / "local-llm.log")
                stack.push_async_callback(local_llm.stop)
                local_llm.launch()
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            model_http = await stack.enter_async_context(model_http_client(local_llm))
            models = models or ModelClients.from_settings(settings, model_http)
            extras = dict(extras or {})
            documents = await _start_documents(settings, http, stack) if with_documents else None
            memory = await _start_memory(settings, stack, documents) if with_memory else None
            extras.setdefault("documents", documents)
            extras.setdefault("memory", memory)
            registry = Registry.build(SpecialistDeps(settings, models, http, extras), specs)
            stack.push_async_callback(registry.aclose)
            checkpointer = await stack.enter_async_context(open_checkpointer(settings))
            setup = getattr(checkpointer, "setup", None)
            if setup is not None:
                await setup()
            if recall is None and memory is not None:
                recall = _memory_recall(memory, settings.memory.recall_k)
            graph = build_graph(
                settings=settings,
                registry=registry,
                supervisor=models.supervisor,
                checkpointer=checkpointer,
                recall=recall,
            )
        except BaseException:
            await stack.aclose()
            raise
        return cls(settings, registry, graph, checkpointer, stack, documents, memory, models, local_llm)

    @property
    def supervisor(self) -> ModelClient | None:
        return self.models.supervisor

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._stack.aclose()

    def embedded_model(self) -> ServerStatus | None:
        """The embedded model server's state, when this process supervises one."""
        return None if self.local_llm is None else self.local_llm.status()

    def model_health(self) -> dict[str, str]:
        """Each model role's server: `closed` (healthy), `open` (paused after failures) or `half-open`."""
        return self.models.health()

    def status(self) -> dict[str, str]:
        """Each specialist: 'ready', or how to enable it."""
        status = {name: "ready" for name in self.registry.available}
        status.update({name: spec.enable_hint for name, spec in self.registry.unavailable.items()})
        if self.documents is not None and "documents" in status:
            status["documents"] = self.documents.store.state  # its store may still be opening
        return status

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 12}

    async def stream_turn(
        self, *, thread_id: str, user_id: str, text: str, files: Sequence[FileRef] = ()
    ) -> AsyncIterator[TurnEvent]:
        """Run one turn of chat `thread_id`, yielding what the UI shows as it happens.

        Failures end with a `TurnFailed` carrying a readable message; cancelling the consumer
        cancels the run (and its HTTP streams). Either way the chat's checkpoint records the
        partial answer as interrupted, so the next turn starts from a consistent history.
        """
        config = self._config(thread_id)
        note = "" if not files else "\n\n(attached: " + ", ".join(f.name for f in files) + ")"
        turn_input: dict[str, Any] = {
            "messages": [HumanMessage(content=text + note)],
            "files": list(files),
            "new_files": list(files),
            "tasks": [],
            "outcomes": [],
            "notices": [],
        }
        context = RunContext(user_id=user_id, thread_id=thread_id)
        partial: list[str] = []
        artifacts: list[dict[str, Any]] = []
        final: str | None = None
        try:
            async for item in self.graph.astream(
                turn_input, config, context=context, stream_mode=["messages", "custom"], durability="exit"
            ):
                mode, chunk = cast(tuple[str, Any], item)
                if mode == "messages":
                    message, metadata = chunk
                    if not isinstance(message, AIMessageChunk) or not message.text:
                        continue
                    tags = metadata.get("tags", [])
                    if ANSWER_TAG in tags:
                        partial.append(message.text)
                        yield AnswerToken(message.text)
                    else:
                        step = next((t[5:] for t in tags if t.startswith("step:")), None)
                        if step is not None:
                            yield StepToken(step, message.text)
                    continue
                event = chunk.get("event")
                if event == "step_start":
                    yield StepStarted(chunk["step_id"], chunk["specialist"], chunk["title"], chunk["input"])
                elif event == "step_end":
                    step_artifacts = tuple(chunk["artifacts"])
                    artifacts.extend(step_artifacts)
                    yield StepFinished(
                        chunk["step_id"],
                        chunk["specialist"],
                        chunk["output"],
                        chunk["error"],
                        chunk["seconds"],
                        step_artifacts,
                    )
                elif event == "notice":
                    yield Notice(chunk["text"])
                elif event == "final":
                    final = chunk["content"]
        except asyncio.CancelledError:
            await asyncio.shield(self._mark_interrupted(config, "".join(partial), "stopped"))
            raise
        except Exception as exc:
            message = (
                str(exc)
                if isinstance(exc, EnsembleError)
                else (f"Something went wrong in Ensemble ({type(exc).__name__}); the error was logged.")
            )
            if not isinstance(exc, EnsembleError):
                log.exception("turn failed in thread %s", thread_id)
            await self._mark_interrupted(config, "".join(partial), message)
            yield TurnFailed(message, "".join(partial))
            return
        answer = final if final is not None else "".join(partial)
        self._learn_in_background(user_id, text, answer)
        yield TurnFinished(answer, tuple(artifacts))

    def _learn_in_background(self, user_id: str, text: str, answer: str) -> None:
        """Extract facts about the user from the finished turn, off the answer's critical path."""
        if self.memory is None or self.supervisor is None or text.lstrip().startswith("/"):
            return
        if not self.memory.worth_learning(text):
            return
        turn = [HumanMessage(content=text), AIMessage(content=answer)]
        task = asyncio.create_task(
            self.memory.learn(user_id, self.supervisor.llm, turn, mode=self.supervisor.endpoint.structured_output)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Wait for background work (memory extraction) to finish; for tests and shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # --- uploads, documents and memories, for the UI --------------------------------------------
    async def accept_uploads(
        self,
        files: Sequence[FileRef],
        *,
        user_id: str,
        thread_id: str,
        progress: ProgressCallback | None = None,
    ) -> Uploads:
        """Check images and ingest documents; each refused file gets a message, the others go on."""
        accepted: list[FileRef] = []
        messages: list[str] = []
        limits = ImageLimits.from_settings(self.settings.uploads)
        documents: list[FileRef] = []
        vision_off = self.registry.unavailable.get("vision")
        for file in files:
            if file.size == 0:
                messages.append(EMPTY_FILE.format(name=file.name))
                continue
            if file.kind == "image":
                try:
                    info = await asyncio.to_thread(validate_image, file.path, limits, name=file.name)
                except EnsembleError as exc:
                    messages.append(str(exc))
                    continue
                accepted.append(replace(file, mime=info.mime))
                if vision_off is not None:
                    messages.append(NO_VISION.format(name=file.name, hint=vision_off.enable_hint))
            else:
                documents.append(file)
        if documents and self.documents is None:
            messages.append(DOCUMENTS_OFF)
        elif documents:
            by_name = {f.name: f for f in documents}
            for result in await self.ingest(documents, user_id=user_id, thread_id=thread_id, progress=progress):
                messages.append(result.message)
                if result.ok and result.file_name in by_name:
                    accepted.append(by_name[result.file_name])
        return Uploads(tuple(accepted), tuple(messages))

    async def ingest(
        self,
        files: Sequence[FileRef],
        *,
        user_id: str,
        thread_id: str,
        progress: ProgressCallback | None = None,
        cancel: asyncio.Event | None = None,
    ) -> list[IngestResult]:
        """Add uploaded documents to the user's library (scoped to this chat)."""
        if self.documents is None:
            raise EnsembleError(DOCUMENTS_OFF)
        return await self.documents.ingest(files, user_id, thread_id, progress, cancel)

    async def memories(self, user_id: str) -> list[Memory]:
        return [] if self.memory is None else await self.memory.list(user_id)

    async def forget(self, user_id: str, memory_id: str | None = None) -> int:
        """Forget one memory, or all of them when `memory_id` is None; returns how many went."""
        if self.memory is None:
            return 0
        if memory_id is None:
            return await self.memory.forget_all(user_id)
        return 0 if await self.memory.forget(user_id, memory_id) is None else 1

    async def _mark_interrupted(self, config: RunnableConfig, partial: str, reason: str) -> None:
        """Close the turn in the checkpoint with what was said so far, marked as interrupted."""
        content = (partial.strip() + "\n\n" if partial.strip() else "") + INTERRUPTED.format(reason=reason)
        try:
            await self.graph.aupdate_state(config, {"messages": [AIMessage(content=content)]}, as_node="answer")
        except Exception:
            log.exception("could not record the interrupted turn")

    async def stores_ready(self) -> bool:
        """Whether the app's own stores answer (what /readyz reports)."""
        try:
            await self.checkpointer.aget_tuple(self._config("__readyz__"))
        except Exception:
            log.exception("checkpointer is not usable")
            return False
        return True

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """(role, text) of a chat's messages, oldest first."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        messages = snapshot.values.get("messages", []) if snapshot.values else []
        return [("user" if isinstance(m, HumanMessage) else "assistant", m.text) for m in messages]

    async def delete_thread(self, thread_id: str, user_id: str) -> None:
        """Forget a chat: its checkpoints, the documents uploaded in it, what specialists kept for it."""
        await self.checkpointer.adelete_thread(thread_id)
        await self.registry.forget_chat(thread_id)
        if self.documents is not None:
            await self.documents.delete_chat(user_id, thread_id)


async def _start_documents(
    settings: Settings, http: httpx.AsyncClient, stack: AsyncExitStack
) -> DocumentService | None:
    """The documents feature, or None (logged, and the specialist says how to enable it)."""
    try:
        documents = await start_documents(settings, http=http, background_store=True)
    except EnsembleError as exc:
        log.warning("documents are unavailable: %s", exc)
        return None
    stack.push_async_callback(documents.aclose)
    return documents


async def _start_memory(
    settings: Settings, stack: AsyncExitStack, documents: DocumentService | None
) -> MemoryService | None:
    """Long-term memory, sharing the documents' embedder (one model loaded, TEI in a cluster)."""
    shared = as_memory_embedder(documents.embedder) if documents is not None else None
    try:
        memory = await open_memory_service(settings, embedder=shared)
    except Exception as exc:
        log.warning("long-term memory is unavailable: %s", exc)
        return None
    if memory is not None:
        stack.push_async_callback(memory.aclose)
    return memory


def _memory_recall(memory: MemoryService, k: int) -> Recall:
    async def recall(context: RunContext, text: str) -> str:
        try:
            found = await memory.recall(context.user_id, text, k)
        except Exception:
            log.exception("memory recall failed; answering without it")
            return ""
        return format_memories([m.text for m in found])

    return recall
