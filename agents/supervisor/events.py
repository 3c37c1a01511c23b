"""What a turn streams, as typed events: the graph's nodes write them, the UI reads them as they are.

Nodes write them through LangGraph's custom stream (`get_stream_writer`); `AgentService.stream_turn`
passes them on and ends every turn with `TurnFinished` or `TurnFailed`. Both sides match on these
classes, never on dict keys or run tags. The module sits in the supervisor package, beside the nodes
that write the events; the UI layer above may import it, and nothing below needs to. Events are
frozen and slotted: a turn makes one per streamed token.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.specialists.base import Artifact
from agents.supervisor.state import ChosenBy


@dataclass(frozen=True, slots=True)
class StepStarted:
    """A specialist took a task: the chat shows a step titled `title` with `input` as what it was asked."""

    step_id: str
    specialist: str
    title: str
    input: str


@dataclass(frozen=True, slots=True)
class StepToken:
    """Text a step's model streamed, shown inside that step."""

    step_id: str
    text: str


@dataclass(frozen=True, slots=True)
class StepFinished:
    """A step's end: its output (or a readable error), its time, and what it made besides text."""

    step_id: str
    specialist: str
    output: str
    error: bool
    seconds: float
    artifacts: tuple[Artifact, ...] = ()


@dataclass(frozen=True, slots=True)
class Decided:
    """Who takes the turn (no specialists: the supervisor answers itself) and how that was chosen."""

    specialists: tuple[str, ...]
    chosen_by: ChosenBy
    seconds: float
    confidence: float | None = None  # how sure the deciding stage was, where it says
    attempts: int = 1  # a model's decision: how many asks it took
    fell_back: bool = False  # a model's decision: unusable twice, so the supervisor answers


@dataclass(frozen=True, slots=True)
class Notice:
    """Something to tell the user besides the answer, e.g. how to enable a specialist they asked for."""

    text: str


@dataclass(frozen=True, slots=True)
class AnswerToken:
    """Text of the answer as it streams."""

    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The whole answer, written once by the node that answered; the streamed text may differ from it
    (citations checked, spaces trimmed). The service ends the turn with it."""

    content: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """The turn's answer as the chat keeps it, with every step's artifacts."""

    content: str
    artifacts: tuple[Artifact, ...] = ()


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """The turn stopped on an error: a readable `message`, and the answer's text streamed before it."""

    message: str
    partial: str = ""


# What the nodes write, and what a turn yields to the UI.
GraphEvent = StepStarted | StepToken | StepFinished | Decided | Notice | AnswerToken | Answer
TurnEvent = StepStarted | StepToken | StepFinished | Decided | Notice | AnswerToken | TurnFinished | TurnFailed
