"""Typed state and run context of the supervisor graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from agents.specialists.base import FileRef


@dataclass(frozen=True)
class Task:
    """One hand-off: which specialist, with what request."""

    specialist: str
    request: str


@dataclass(frozen=True)
class TaskOutcome:
    """What a specialist returned for a task (artifacts travel to the UI as stream events)."""

    task: Task
    content: str
    error: bool
    seconds: float


def add_files(existing: list[FileRef] | None, new: list[FileRef] | None) -> list[FileRef]:
    """Files of a chat accumulate, once each, oldest first."""
    merged = list(existing or [])
    seen = {f.id for f in merged}
    merged.extend(f for f in new or [] if f.id not in seen)
    return merged


class SupervisorState(TypedDict, total=False):
    """The checkpointed state of one chat (one LangGraph thread)."""

    messages: Annotated[list[AnyMessage], add_messages]
    files: Annotated[list[FileRef], add_files]
    # Per turn (reset by every new input):
    new_files: list[FileRef]
    tasks: list[Task]
    outcomes: list[TaskOutcome]
    notices: list[str]
    memories: str  # what is recalled about the user for this turn, as prompt text


@dataclass(frozen=True)
class RunContext:
    """Set by the app for each run; models never see or choose it."""

    user_id: str
    thread_id: str
    extras: dict[str, Any] = field(default_factory=dict)


# The state's own types that checkpoints may hold (LangGraph's serializer refuses others by default).
CHECKPOINT_TYPES: tuple[type, ...] = (Task, TaskOutcome, FileRef)
