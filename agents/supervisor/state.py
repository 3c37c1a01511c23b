"""Typed state and run context of the supervisor graph, and the user's message as the chat keeps it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.channels import EphemeralValue
from langgraph.graph.message import add_messages

from agents.specialists.base import FileRef
from agents.specialists.registry import Entry
from agents.supervisor.prompts import ATTACHED_NOTE

# How the specialists of a turn were chosen: a slash command, an unmistakable phrase, the facts of the turn
# (what is attached, what is available), the fast classifier, or the supervisor model.
ChosenBy = Literal["command", "phrase", "facts", "fast", "model"]

ATTACHMENTS = "attachments"  # the message's `additional_kwargs` key: names of the files sent with it


@dataclass(frozen=True)
class Task:
    """One hand-off: which specialist, with what request, chosen how."""

    specialist: str
    request: str
    chosen_by: ChosenBy = "model"


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
    # Handed from one node to the next within a turn; LangGraph clears them after that step, so no
    # turn sees another's and none outlives its turn.
    tasks: Annotated[list[Task], EphemeralValue]
    outcomes: Annotated[list[TaskOutcome], EphemeralValue]
    memories: Annotated[str, EphemeralValue]  # what is recalled about the user, as prompt text


@dataclass(frozen=True)
class RunContext:
    """Set by the app for each run; models never see or choose it."""

    user_id: str
    thread_id: str
    files: tuple[FileRef, ...] = ()  # the files attached to this very message
    # Specialists of this user's own connections (their MCP servers): offered in this run only.
    connected: tuple[Entry, ...] = ()


def user_message(text: str, files: Sequence[FileRef] = ()) -> HumanMessage:
    """The user's message as the chat keeps it: their words, and the names of the files sent with it."""
    if not files:
        return HumanMessage(content=text)
    return HumanMessage(content=text, additional_kwargs={ATTACHMENTS: [f.name for f in files]})


def attachment_names(message: AnyMessage) -> list[str]:
    """The names of the files sent with `message` (none for a model's message)."""
    names = message.additional_kwargs.get(ATTACHMENTS) if isinstance(message, HumanMessage) else None
    return [str(name) for name in names] if isinstance(names, list) else []


def for_model(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """The chat as a model reads it: each user message that came with files says which, after its text."""
    shown: list[AnyMessage] = []
    for message in messages:
        names = attachment_names(message)
        if names:
            message = HumanMessage(content=message.text + ATTACHED_NOTE.format(names=", ".join(names)))
        shown.append(message)
    return shown


def estimated_tokens(text: str) -> int:
    """A token count no tokenizer here exceeds for `text`: one per 3 bytes of UTF-8 (English runs ~4
    characters a token, code ~3, CJK ~1 per 3-byte character), plus a message's framing."""
    return len(text.encode()) // 3 + 4


def fitting(messages: Sequence[AnyMessage], budget: int) -> list[AnyMessage]:
    """The newest `messages` whose estimated tokens fit in `budget`; the last one always, cut to fit."""
    kept: list[AnyMessage] = []
    used = 0
    for message in reversed(messages):
        cost = estimated_tokens(message.text)
        if kept and used + cost > budget:
            break
        if not kept and cost > budget:  # the user's own message alone is too long: its end is kept
            tail = message.text.encode()[-max(3, (budget - 4) * 3) :]
            message = message.model_copy(update={"content": tail.decode(errors="ignore")})
            cost = budget
        kept.append(message)
        used += cost
    return kept[::-1]


# The state's own types that checkpoints may hold (LangGraph's serializer refuses others by default).
CHECKPOINT_TYPES: tuple[type, ...] = (Task, TaskOutcome, FileRef)
