"""What every specialist is: a name, a routing description, how to enable it, and an async `run`.

A specialist module exposes one `SPEC: SpecialistSpec`; `registry.py` lists them all. The
supervisor only ever sees specialists through `agents.specialists.registry.Registry`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from langchain_core.runnables import RunnableConfig

from core.models import ModelClients
from core.settings import Settings

FileKind = Literal["image", "document", "other"]
ArtifactKind = Literal["image", "source", "code", "file"]


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
        """Do the work for `request`; LLM calls pass `config` on so their tokens stream."""
        ...


@dataclass
class SpecialistDeps:
    """What specialists are built from at startup: settings, model clients, one HTTP client."""

    settings: Settings
    models: ModelClients
    http: httpx.AsyncClient
    extras: dict[str, Any] = field(default_factory=dict)  # stores built by other rooms (docs, memory)


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
    build: Callable[[SpecialistDeps], Specialist | None]
    command: str | None = None  # slash command that routes straight here, e.g. "/code"
    # When True, a message matching `asks_for` is routed here without asking the model: for intents
    # that must work whatever the model (e.g. "forget everything").
    routes_directly: bool = False
    aclose: Callable[[Specialist], Awaitable[None]] | None = None
    # Removes what the specialist kept on disk for a chat that is deleted (its thread id).
    forget_chat: Callable[[Specialist, str], Awaitable[None]] | None = None
