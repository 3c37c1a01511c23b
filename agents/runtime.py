"""Ensemble, started once: the wiring of clients, services, specialists and the supervisor graph.

`await Ensemble.start(settings)` at startup builds, in order: the HTTP and model clients (one per
model role the specialists name), the documents and memory services, the specialists (from one typed
`Services`), the checkpointer and the compiled graph; `aclose()` undoes it all. The UI layer holds
this one object and asks it for turns, uploads, chats, memories and readiness; the agent API itself
is `agents.supervisor.service.AgentService`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from agents.specialists.base import FileRef, Services, SpecialistSpec
from agents.specialists.mcp_tools import user_specialist
from agents.specialists.registry import Entry, Registry, configured_specs, model_roles
from agents.supervisor.classifier import RecentVectors
from agents.supervisor.events import Decided, TurnEvent, TurnFinished
from agents.supervisor.graph import Recall, Scope, build_graph
from agents.supervisor.router import FastStage
from agents.supervisor.service import AgentService
from agents.supervisor.state import CHECKPOINT_TYPES, RunContext
from core.databases import checkpoints_location
from core.embeddings import Embedder
from core.errors import EnsembleError
from core.local_llm import LocalLLMServer, ServerStatus
from core.logs import quiet_library_noise
from core.models import ModelClients, model_http_client
from core.outbound import vet_url
from core.settings import Settings
from memory import MemoryService, format_memories, open_memory_service
from memory.embeddings import EmbedderUnavailable, local_embedder
from memory.records import Memory
from rag.service import DocumentService
from rag.service import start as start_documents
from rag.types import IngestResult, ProgressCallback

if TYPE_CHECKING:
    from mcp import ClientSession

log = logging.getLogger(__name__)

DOCUMENTS_OFF = "Documents are not available in this deployment (the startup log says why)."
EMPTY_FILE = "“{name}” is empty (0 bytes): there is nothing in it to read, so it was not added."


@dataclass(frozen=True)
class Uploads:
    """What came of a message's files: those the turn may use, and a message per file for the chat."""

    accepted: tuple[FileRef, ...]
    messages: tuple[str, ...]


def open_checkpointer(settings: Settings) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
    """SQLite file by default; PostgreSQL when ENSEMBLE_DATABASE_URL names one (core.databases)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)
    location = checkpoints_location(settings)
    if location.backend == "postgres":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        return AsyncPostgresSaver.from_conn_string(location.target, serde=serde)
    from core.sqlite_threads import sqlite_checkpointer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # WAL + synchronous=NORMAL: an app crash loses nothing, a power cut at most the last turns' checkpoints
    return sqlite_checkpointer(Path(location.target), serde)


@dataclass
class Ensemble:
    """The running app's agent side: registry, services, model clients and the agent API, built once."""

    settings: Settings
    registry: Registry
    agent: AgentService
    models: ModelClients
    _stack: AsyncExitStack = field(repr=False)
    documents: DocumentService | None = None
    memory: MemoryService | None = None
    local_llm: LocalLLMServer | None = None  # the embedded model server, when this process supervises it
    _background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        models: ModelClients | None = None,
        specs: Sequence[SpecialistSpec] | None = None,
        recall: Recall | None = None,
        with_documents: bool = True,
        with_memory: bool = True,
    ) -> Ensemble:
        """Build clients, services, specialists and the graph; open the checkpointer.

        `models` and `specs` replace the ones built from settings (tests, benchmarks, evaluation; by
        default the built-in specialists and one per MCP server in `settings.mcp`, made now);
        `with_documents`/`with_memory` False leave those features out. When
        the settings use the embedded model server (and `models` is not given), it starts in the
        background and is supervised: until it is ready, /readyz says so and a turn says it is starting.
        """
        quiet_library_noise()
        specs = await configured_specs(settings) if specs is None else tuple(specs)
        stack = AsyncExitStack()
        try:
            local_llm = _launch_local_llm(settings, stack) if models is None else None
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            model_http = await stack.enter_async_context(model_http_client(local_llm))
            models = models or ModelClients.from_settings(settings, model_roles(specs), model_http)
            documents = await _start_documents(settings, http, stack) if with_documents else None
            # One embedder for documents, memory and the router (the documents' when there are documents),
            # remembering the turn's request so that it is embedded once.
            fast_router = settings.router.mode in ("fast", "cascade")
            base = documents.embedder if documents is not None else None
            if base is None and (fast_router or with_memory):
                base = await _local_embedder(settings, stack)
            shared = None if base is None else RecentVectors(base)
            memory = await _start_memory(settings, stack, shared) if with_memory else None
            services = Services(settings, http, models, documents=documents, memory=memory)
            registry = Registry.build(services, specs)
            stack.push_async_callback(registry.aclose)
            fast = None
            if fast_router and shared is not None:
                available = [entry.spec for entry in registry.available.values()]
                fast = FastStage(shared, available, settings, settings.model_cache).start()
                stack.push_async_callback(fast.aclose)
            checkpointer = await stack.enter_async_context(open_checkpointer(settings))
            setup = getattr(checkpointer, "setup", None)
            if setup is not None and inspect.iscoroutinefunction(setup):  # PostgreSQL's (SQLite's is set up)
                await setup()
            if recall is None and memory is not None:
                recall = _memory_recall(memory, settings.memory.recall_k)
            graph = build_graph(
                settings=settings,
                registry=registry,
                supervisor=models.supervisor,
                checkpointer=checkpointer,
                recall=recall,
                fast=fast,
                documents_in_scope=None if documents is None else _documents_in_scope(documents),
            )
        except BaseException:
            await stack.aclose()
            raise
        agent = AgentService(graph, checkpointer)
        return cls(settings, registry, agent, models, stack, documents, memory, local_llm)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._stack.aclose()

    # --- turns and chats -----------------------------------------------------------------------
    async def stream_turn(
        self,
        *,
        thread_id: str,
        user_id: str,
        text: str,
        files: Sequence[FileRef] = (),
        connected: Sequence[Entry] = (),
    ) -> AsyncIterator[TurnEvent]:
        """One turn (`AgentService.stream_turn`); after a finished one that no command decided, memory
        learns from it in the background. `connected`: the user's own MCP specialists (`connect_mcp`)."""
        by_command = False
        async for event in self.agent.stream_turn(
            thread_id=thread_id, user_id=user_id, text=text, files=files, connected=connected
        ):
            if isinstance(event, Decided):
                by_command = event.chosen_by == "command"
            elif isinstance(event, TurnFinished) and not by_command:
                self._learn_in_background(user_id, text, event.content)
            yield event

    def _learn_in_background(self, user_id: str, text: str, answer: str) -> None:
        """Extract facts about the user from the finished turn, off the answer's critical path."""
        supervisor = self.models.supervisor
        if self.memory is None or supervisor is None or not self.memory.worth_learning(text):
            return
        turn = [HumanMessage(content=text), AIMessage(content=answer)]
        task = asyncio.create_task(
            self.memory.learn(user_id, supervisor.llm, turn, mode=supervisor.endpoint.structured_output)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def idle(self) -> None:
        """Wait for background work (memory extraction) to finish; for tests and shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """(role, text) of a chat's messages, oldest first."""
        return await self.agent.history(thread_id)

    async def delete_thread(self, thread_id: str, user_id: str) -> None:
        """Forget a chat: its checkpoints, the documents uploaded in it, what specialists kept for it."""
        await self.agent.delete_thread(thread_id)
        await self.registry.forget_chat(thread_id)
        if self.documents is not None:
            await self.documents.delete_chat(user_id, thread_id)

    # --- uploads ------------------------------------------------------------------------------
    async def accept_uploads(
        self,
        files: Sequence[FileRef],
        *,
        user_id: str,
        thread_id: str,
        progress: ProgressCallback | None = None,
    ) -> Uploads:
        """Check each file with the specialist that reads its kind (images: vision), ingest the others as
        documents; each refused file, and each that no enabled specialist will read, gets a message."""
        accepted: list[FileRef] = []
        messages: list[str] = []
        documents: list[FileRef] = []
        for file in files:
            if file.size == 0:
                messages.append(EMPTY_FILE.format(name=file.name))
                continue
            reader = self.registry.reader_of(file.kind)
            if reader is None or reader.uploads is None:  # documents, and anything else: the ingest says
                documents.append(file)
                continue
            if reader.name in self.registry.unavailable and reader.uploads.otherwise_documents:
                messages.append(reader.uploads.unread.format(name=file.name, hint=reader.enable_hint))
                documents.append(file)
                continue
            try:
                accepted.append(await asyncio.to_thread(reader.uploads.check, file, self.settings))
            except EnsembleError as exc:
                messages.append(str(exc))
                continue
            if reader.name in self.registry.unavailable:
                messages.append(reader.uploads.unread.format(name=file.name, hint=reader.enable_hint))
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

    # --- memories -----------------------------------------------------------------------------
    async def memories(self, user_id: str) -> list[Memory]:
        return [] if self.memory is None else await self.memory.list_memories(user_id)

    async def forget(self, user_id: str, memory_id: str | None = None) -> int:
        """Forget one memory, or all of them when `memory_id` is None; returns how many went."""
        if self.memory is None:
            return 0
        if memory_id is None:
            return await self.memory.forget_all(user_id)
        return 0 if await self.memory.forget(user_id, memory_id) is None else 1

    # --- a user's own MCP servers -------------------------------------------------------------
    async def connect_mcp(self, label: str, session: ClientSession, url: str | None = None) -> Entry:
        """A specialist over the live MCP session a user opened in the chat; the caller keeps it in that
        user's session and hands it to their turns only (`stream_turn(connected=...)`). Raises
        EnsembleError (readable) when the server's tools cannot be listed, or when `url` is a name that
        resolves to an internal address (only an address the operator listed literally may be internal)."""
        if url is not None:
            await vet_url(url, trusted=_listed_literally(url, self.settings.mcp.user_allowed_urls))
        spec, specialist = await user_specialist(label, session, self.models.supervisor, self.settings.mcp)
        return Entry(spec, specialist)

    # --- readiness ----------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        """Each specialist: 'ready' (or its own state, e.g. an MCP server's), or how to enable it."""
        status = {
            name: "ready" if entry.spec.state is None else entry.spec.state(entry.specialist)
            for name, entry in self.registry.available.items()
        }
        status.update({name: spec.enable_hint for name, spec in self.registry.unavailable.items()})
        if self.documents is not None and "documents" in status:
            status["documents"] = self.documents.store.state  # its store may still be opening
        return status

    def embedded_model(self) -> ServerStatus | None:
        """The embedded model server's state, when this process supervises one."""
        return None if self.local_llm is None else self.local_llm.status()

    def model_health(self) -> dict[str, str]:
        """Each model role's server: `closed` (healthy), `open` (paused after failures) or `half-open`."""
        return self.models.health()

    async def stores_ready(self) -> bool:
        """Whether the app's own stores answer (what /readyz reports)."""
        return await self.agent.ready()


def _listed_literally(url: str, allowed: Sequence[str]) -> bool:
    """Whether `url`'s host is an IP address written in one of the allowed URL prefixes."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(urlsplit(prefix).hostname == host for prefix in allowed)


def _launch_local_llm(settings: Settings, stack: AsyncExitStack) -> LocalLLMServer | None:
    """The embedded model server, started in the background (its self-test takes a few seconds) and
    supervised, when the settings use it."""
    if not settings.local_llm_active:
        return None
    server = LocalLLMServer(settings.local_llm, settings.data_dir / "local-llm.log")
    server.launch()
    stack.push_async_callback(server.stop)
    return server


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


async def _local_embedder(settings: Settings, stack: AsyncExitStack) -> Embedder | None:
    """The local embedding model (loading in the background), when there are no documents to share theirs."""
    try:
        embedder = await local_embedder(settings)
    except (EmbedderUnavailable, OSError) as exc:
        log.warning("no local embedding model (%s): the router's fast stage and semantic recall are off", exc)
        return None
    stack.push_async_callback(embedder.aclose)
    return embedder


def _documents_in_scope(documents: DocumentService) -> Scope:
    """Whether a user has any document the documents specialist could search (remembered a while)."""

    async def in_scope(context: RunContext) -> bool:
        try:
            return await documents.has_documents(context.user_id)
        except Exception:
            log.warning("could not count the documents of user %s; not offering documents", context.user_id)
            return False

    return in_scope


async def _start_memory(settings: Settings, stack: AsyncExitStack, embedder: Embedder | None) -> MemoryService | None:
    """Long-term memory, sharing the app's one embedder (the documents' where there are documents)."""
    try:
        memory = await open_memory_service(settings, embedder=embedder)
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
