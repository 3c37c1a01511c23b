"""The supervisor's routing decision, validated: tool calls or schema-constrained JSON.

A decision that cannot be used is retried once with the reason; after that the supervisor
answers directly. Model-server failures are not decisions and propagate to the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field, ValidationError

from agents.specialists.base import SpecialistSpec
from agents.supervisor.prompts import (
    ROUTER_JSON_INSTRUCTIONS,
    ROUTER_RETRY_PROMPT,
    ROUTER_SYSTEM_PROMPT,
    ROUTER_TOOLS_INSTRUCTIONS,
)
from agents.supervisor.state import Task
from core.models import ModelClient
from core.settings import Settings

log = logging.getLogger(__name__)

TOOL_PREFIX = "ask_"


class _TaskModel(BaseModel):
    specialist: str
    request: str = ""


class _DecisionModel(BaseModel):
    tasks: list[_TaskModel] = Field(default_factory=list)


class InvalidDecision(ValueError):
    """The model's decision was not usable (unparseable, unknown specialist, bad arguments)."""


@dataclass(frozen=True)
class Decision:
    """Tasks to hand off (empty: answer directly). `answer` is set when the model already answered."""

    tasks: tuple[Task, ...]
    answer: AIMessage | None = None
    attempts: int = 1
    fell_back: bool = False


def decision_schema(names: Sequence[str], max_tasks: int) -> dict[str, Any]:
    """JSON schema of a decision: a list of hand-offs to the named specialists."""
    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "maxItems": max_tasks,
                "items": {
                    "type": "object",
                    "properties": {
                        "specialist": {"type": "string", "enum": list(names)},
                        "request": {"type": "string", "maxLength": 300},
                    },
                    "required": ["specialist"],
                },
            }
        },
        "required": ["tasks"],
    }


def specialist_tools(specs: Sequence[SpecialistSpec]) -> list[dict[str, Any]]:
    """One OpenAI function tool per available specialist."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"{TOOL_PREFIX}{spec.name}",
                "description": spec.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "request": {
                            "type": "string",
                            "description": "Empty: the user's message is forwarded as it is. Only when "
                            "it must be rewritten for this specialist (it refers to earlier messages, or asks "
                            "several things): the request, self-contained.",
                        }
                    },
                    "required": ["request"],
                },
            },
        }
        for spec in specs
    ]


def _tasks_from(items: Sequence[tuple[str, str]], names: Sequence[str], fallback: str, limit: int) -> list[Task]:
    tasks: list[Task] = []
    for name, request in items:
        if name not in names:
            raise InvalidDecision(f"unknown specialist {name!r}; choose from {', '.join(names)}")
        task = Task(specialist=name, request=request.strip() or fallback)
        if task not in tasks:
            tasks.append(task)
    return tasks[:limit]


def parse_json_decision(text: str, names: Sequence[str], fallback: str, limit: int) -> list[Task]:
    """Tasks from a JSON decision; raises InvalidDecision."""
    try:
        # strict=False: grammar-constrained JSON may carry raw newlines inside strings
        model = _DecisionModel.model_validate(json.loads(text, strict=False))
    except json.JSONDecodeError as exc:
        raise InvalidDecision(f"the reply was not JSON ({exc.msg})") from exc
    except ValidationError as exc:
        raise InvalidDecision(f"the reply was not valid decision JSON ({exc.error_count()} errors)") from exc
    return _tasks_from([(t.specialist, t.request) for t in model.tasks], names, fallback, limit)


def parse_tool_decision(message: AIMessage, names: Sequence[str], fallback: str, limit: int) -> list[Task]:
    """Tasks from tool calls; raises InvalidDecision."""
    if message.invalid_tool_calls:
        bad = message.invalid_tool_calls[0]
        raise InvalidDecision(f"tool call {bad.get('name')!r} had arguments that were not valid JSON")
    items: list[tuple[str, str]] = []
    for call in message.tool_calls:
        name = call["name"].removeprefix(TOOL_PREFIX)
        request = call["args"].get("request")
        if not isinstance(request, str):
            raise InvalidDecision(f"tool {call['name']!r} needs a string 'request' argument")
        items.append((name, request))
    return _tasks_from(items, names, fallback, limit)


class Router:
    """Asks the supervisor model for a decision in the way its endpoint supports."""

    def __init__(self, client: ModelClient, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._mode = client.endpoint.structured_output

    def _system(self, specs: Sequence[SpecialistSpec], memories: str) -> str:
        model = self._client.model_name
        template = self._settings.prompt("supervisor.route", model, ROUTER_SYSTEM_PROMPT)
        listing = "\n".join(f"- {spec.name}: {spec.description}" for spec in specs)
        system = template.format(specialists=listing, max_tasks=self._settings.max_specialists_per_turn)
        if memories:
            system += "\n\n" + memories
        if self._mode == "tools":
            return system + "\n" + self._settings.prompt("supervisor.route_tools", model, ROUTER_TOOLS_INSTRUCTIONS)
        return system + "\n" + self._settings.prompt("supervisor.route_json", model, ROUTER_JSON_INSTRUCTIONS)

    async def decide(
        self,
        history: Sequence[AnyMessage],
        specs: Sequence[SpecialistSpec],
        user_text: str,
        memories: str = "",
        *,
        answer: RunnableConfig | None = None,
    ) -> Decision:
        """The decision on the chat's last message. In `tools` mode the model may answer instead of
        handing off: that reply's tokens stream through `answer` (a JSON decision never streams)."""
        names = [spec.name for spec in specs]
        limit = self._settings.max_specialists_per_turn
        messages: list[AnyMessage] = [SystemMessage(self._system(specs, memories)), *history]
        for attempt in (1, 2):
            try:
                reply = await self._ask(messages, specs, names, limit, answer or {})
            except openai.LengthFinishReasonError:
                log.warning("routing decision hit the token limit (attempt %d)", attempt)
                messages = [*messages, HumanMessage(ROUTER_RETRY_PROMPT.format(error="it was too long"))]
                continue
            try:
                if self._mode == "tools":
                    tasks = parse_tool_decision(reply, names, user_text, limit)
                    if not tasks:
                        return Decision(tasks=(), answer=AIMessage(content=reply.text), attempts=attempt)
                else:
                    tasks = parse_json_decision(reply.text, names, user_text, limit)
                return Decision(tasks=tuple(tasks), attempts=attempt)
            except InvalidDecision as exc:
                log.warning("invalid routing decision (attempt %d): %s", attempt, exc)
                messages = [
                    *messages,
                    AIMessage(content=reply.text or "(invalid tool call)"),
                    HumanMessage(ROUTER_RETRY_PROMPT.format(error=exc)),
                ]
        return Decision(tasks=(), attempts=2, fell_back=True)

    async def _ask(
        self,
        messages: list[AnyMessage],
        specs: Sequence[SpecialistSpec],
        names: list[str],
        limit: int,
        answer: RunnableConfig,
    ) -> AIMessage:
        llm = self._client.llm
        if self._mode == "tools":
            reply = await llm.bind_tools(specialist_tools(specs)).ainvoke(
                messages, config={**answer, "run_name": "supervisor.route"}
            )
        else:
            schema = decision_schema(names, limit)
            response_format: dict[str, Any]
            if self._mode == "json_schema":
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": "decision", "schema": schema, "strict": False},
                }
            else:  # llama.cpp's grammar-constrained JSON
                response_format = {"type": "json_object", "schema": schema}
            # Nobody reads a JSON decision as it is written: asked for whole, it skips the SDK's
            # per-chunk parsing of structured output (~3 ms of a turn's framework time, benchmark 1).
            reply = await llm.bind(response_format=response_format, stream=False).ainvoke(
                messages, config={"run_name": "supervisor.route"}
            )
        if not isinstance(reply, AIMessage):  # pragma: no cover - ChatOpenAI always returns one
            raise InvalidDecision("the model returned no message")
        return reply
