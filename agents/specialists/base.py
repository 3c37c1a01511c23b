"""What every specialist is: a name, a routing description, how to enable it, and an async `run`.

A specialist module exposes one `SPEC: SpecialistSpec`; `registry.py` lists them all. The
supervisor only ever sees specialists through `agents.specialists.registry.Registry`. Specialists
are built at startup from one typed `Services`, which holds a client for each model role a spec names.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from langchain_core.runnables import RunnableConfig

from core.models import ModelClient, ModelClients, ModelRole
from core.settings import Settings

if TYPE_CHECKING:  # the services' types only: their packages load when startup builds them
    from memory.service import MemoryService
    from rag.service import DocumentService

FileKind = Literal["image", "document", "table", "other"]
ArtifactKind = Literal["image", "source", "code", "file", "tool_call"]
# What must hold in a turn for a specialist to apply (the router never offers it otherwise):
# `recent_image` an image attached to this message or the one before; `documents` the user has documents;
# `tables` a table (CSV/XLSX) was shared in this chat.
Need = Literal["recent_image", "documents", "tables"]


@dataclass(frozen=True)
class FileRef:
    """A file the user uploaded in this chat, as stored on disk by the UI layer."""

    id: str
    name: str
    path: str
    mime: str
    size: int
    kind: FileKind

    @property
    def file_path(self) -> Path:
        return Path(self.path)


@dataclass(frozen=True)
class TurnContext:
    """Who is asking and what they have shared; set by the app, never by a model."""

    user_id: str
    thread_id: str
    files: tuple[FileRef, ...] = ()  # every file shared in this chat so far, oldest first
    new_files: tuple[FileRef, ...] = ()  # the files attached to this very message

    def images(self) -> tuple[FileRef, ...]:
        return tuple(f for f in self.files if f.kind == "image")


@dataclass(frozen=True)
class Artifact:
    """Something a specialist made besides text: an image, a cited source, a long code block."""

    kind: ArtifactKind
    name: str
    path: str | None = None
    url: str | None = None
    content: str | None = None
    mime: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpecialistResult:
    """A specialist's answer. `error` marks a readable failure message instead of an answer."""

    content: str
    artifacts: tuple[Artifact, ...] = ()
    error: bool = False


class Specialist(Protocol):
    """A built, ready-to-run specialist."""

    name: str

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        """Do the work for `request` (the user's words for it; "" when a bare command named it).

        A model call given `config` streams its tokens to the chat as they come; a call whose
        tokens must not be shown (e.g. before its links are checked) is made without it.
        """
        ...


@dataclass(frozen=True)
class Services:
    """What specialists are built from at startup, built once by `agents.runtime`.

    `models` holds a client per model role that has a server; `documents` and `memory` are None
    where that feature is off.
    """

    settings: Settings
    http: httpx.AsyncClient
    models: ModelClients = field(default_factory=ModelClients)
    documents: DocumentService | None = None
    memory: MemoryService | None = None

    def model(self, role: ModelRole | None) -> ModelClient | None:
        """The client of `role`, or None (no role, or its server is not configured)."""
        return None if role is None else self.models.get(role)


@dataclass(frozen=True)
class UploadRule:
    """How the specialist that reads some kinds of file checks them when they are uploaded.

    `check` runs in a worker thread and returns the file as accepted, or raises an EnsembleError whose
    message the chat shows; `unread` (with `{name}` and `{hint}`) is said when the specialist is off.
    """

    kinds: tuple[FileKind, ...]
    check: Callable[[FileRef, Settings], FileRef]
    unread: str
    # When the specialist is off, such files are read as documents instead (a table's text still helps).
    otherwise_documents: bool = False


@dataclass(frozen=True)
class SpecialistSpec:
    """How the registry knows a specialist.

    `build` returns None when the specialist's server is not configured; then `enable_hint`
    (the setting to set) is what a user who asks for it is told, and `asks_for` (a pattern of
    phrases such as "search the web") is how such a request is recognised without a model.
    """

    name: str
    title: str
    description: str
    enable_hint: str
    asks_for: re.Pattern[str]
    build: Callable[[Services], Specialist | None]
    # The chat model it needs, by role: startup builds a client for it from ENSEMBLE_<ROLE>__BASE_URL.
    model_role: ModelRole | None = None
    command: str | None = None  # slash command that routes straight here, e.g. "/code"
    # When True, a message matching `asks_for` is routed here without asking the model: for intents
    # that must work whatever the model (e.g. "forget everything").
    routes_directly: bool = False
    aclose: Callable[[Specialist], Awaitable[None]] | None = None
    uploads: UploadRule | None = None  # the kinds of uploaded file it reads, checked at upload
    # Removes what the specialist kept on disk for a chat that is deleted (its thread id).
    forget_chat: Callable[[Specialist, str], Awaitable[None]] | None = None
    # What must hold in a turn for it to apply; the router does not offer it otherwise.
    needs: tuple[Need, ...] = ()
    # Example requests it should take, for the router's fast classifier, besides those in the file
    # `exemplars.txt` of its package (a spec made at startup, e.g. from settings, carries them here).
    exemplars: tuple[str, ...] = ()
    # Its state for /readyz when it is built ("ready" when None): e.g. a remote server's reachability.
    state: Callable[[Specialist], str] | None = None
