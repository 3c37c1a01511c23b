"""The agent API: a chat's turns through the compiled supervisor graph as typed events, its history, its end.

Built by `agents.runtime` at startup; the UI reaches it through the runtime and never builds a model,
a graph or a store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

from agents.specialists.base import Artifact, FileRef
from agents.specialists.registry import Entry
from agents.supervisor.events import (
    Answer,
    AnswerToken,
    GraphEvent,
    StepFinished,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from agents.supervisor.state import RunContext, user_message
from core.errors import EnsembleError

log = logging.getLogger(__name__)

INTERRUPTED = "_[interrupted: {reason}]_"


class AgentService:
    """Turns, history and deletion of chats; one LangGraph thread per chat, checkpointed."""

    def __init__(self, graph: CompiledStateGraph[Any, Any, Any, Any], checkpointer: BaseCheckpointSaver[Any]) -> None:
        self.graph = graph
        self.checkpointer = checkpointer

    @staticmethod
    def _config(thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": 12}

    async def stream_turn(
        self,
        *,
        thread_id: str,
        user_id: str,
        text: str,
        files: Sequence[FileRef] = (),
        connected: Sequence[Entry] = (),
    ) -> AsyncIterator[TurnEvent]:
        """Run one turn of chat `thread_id`, yielding what the UI shows as it happens.

        Failures end with a `TurnFailed` carrying a readable message; cancelling the consumer
        cancels the run (and its HTTP streams). Either way the chat's checkpoint records the
        streamed part of the answer as interrupted, so the next turn starts from a consistent history.
        `connected` are the user's own specialists (their MCP connections), offered to this turn only.
        """
        config = self._config(thread_id)
        turn_input: dict[str, Any] = {"messages": [user_message(text, files)], "files": list(files)}
        context = RunContext(user_id=user_id, thread_id=thread_id, files=tuple(files), connected=tuple(connected))
        streamed: list[str] = []  # the answer's tokens, kept only to record an unfinished turn
        artifacts: list[Artifact] = []
        answer: str | None = None
        try:
            async for item in self.graph.astream(
                turn_input, config, context=context, stream_mode="custom", durability="exit"
            ):
                event = cast(GraphEvent, item)  # only the nodes write to this stream
                if isinstance(event, Answer):
                    answer = event.content
                    continue
                if isinstance(event, AnswerToken):
                    streamed.append(event.text)
                elif isinstance(event, StepFinished):
                    artifacts.extend(event.artifacts)
                yield event
        except asyncio.CancelledError:
            await asyncio.shield(self._mark_interrupted(config, "".join(streamed), "stopped"))
            raise
        except Exception as exc:
            message = (
                str(exc)
                if isinstance(exc, EnsembleError)
                else (f"Something went wrong in Ensemble ({type(exc).__name__}); the error was logged.")
            )
            if not isinstance(exc, EnsembleError):
                log.exception("turn failed in thread %s", thread_id)
            await self._mark_interrupted(config, "".join(streamed), message)
            yield TurnFailed(message, "".join(streamed))
            return
        yield TurnFinished("".join(streamed) if answer is None else answer, tuple(artifacts))

    async def _mark_interrupted(self, config: RunnableConfig, partial: str, reason: str) -> None:
        """Close the turn in the checkpoint with what was said so far, marked as interrupted."""
        content = (partial.strip() + "\n\n" if partial.strip() else "") + INTERRUPTED.format(reason=reason)
        try:
            await self.graph.aupdate_state(config, {"messages": [AIMessage(content=content)]}, as_node="answer")
        except Exception:
            log.exception("could not record the interrupted turn")

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """(role, text) of a chat's messages, oldest first."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        messages = snapshot.values.get("messages", []) if snapshot.values else []
        return [("user" if isinstance(m, HumanMessage) else "assistant", m.text) for m in messages]

    async def delete_thread(self, thread_id: str) -> None:
        """Forget a chat's checkpoints."""
        await self.checkpointer.adelete_thread(thread_id)

    async def ready(self) -> bool:
        """Whether the checkpointer answers (part of what /readyz reports)."""
        try:
            await self.checkpointer.aget_tuple(self._config("__readyz__"))
        except Exception:
            log.exception("checkpointer is not usable")
            return False
        return True
