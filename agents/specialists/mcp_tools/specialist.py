"""An MCP server as a specialist: choose one of its tools, write its arguments, call it, show its result.

A weak model cannot make OpenAI tool calls, so the tool and then its arguments are asked for as JSON
constrained by a schema (the tool's own `inputSchema` for the arguments), and checked against that schema.
With grammar-constrained JSON (the embedded 135M model) a string argument is one of the request's words or
short phrases: such a model copies a value it is offered, where it invents one it must write.
Arguments the server refuses go back to the model once, with the server's reason fenced as data; a second
refusal becomes a readable message. `/<server> <tool> {json}` calls a tool directly, with no model.

The result is the answer as it is, quoted: no model rewrites it, so text in it cannot steer the answer.
Each attempt is an `Artifact(kind="tool_call")` (tool, arguments, result) that the chat shows as a step.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

import jsonschema
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Artifact, SpecialistResult, TurnContext
from agents.specialists.mcp_tools.client import McpTool, McpToolbox, McpToolError
from agents.specialists.mcp_tools.prompts import (
    ARGUMENTS_PROMPT,
    CHOOSE_TOOL_PROMPT,
    EMPTY_REQUEST,
    GAVE_UP,
    NO_MODEL,
    NO_TOOLS,
    RESULT_TEMPLATE,
    RETRY_PROMPT,
    TOOL_FAILED,
    UNUSABLE_CHOICE,
)
from core.errors import EnsembleError, describe_server_error
from core.models import ModelClient

log = logging.getLogger(__name__)

MAX_STRING = 300  # characters the model may write into one string argument (grammar bound)
DIRECT = re.compile(r"^\s*(?P<tool>[A-Za-z_][\w.-]*)\s*(?P<args>\{.*\})?\s*$", re.S)


class UnusableReply(ValueError):
    """The model's JSON could not be used (unparseable, or not matching the schema)."""


def request_spans(request: str, longest: int = 3, limit: int = 80) -> list[str]:
    """The request's words and phrases of up to `longest` words (punctuation trimmed), and the request
    itself: the values a string argument may take when they must come from the request."""
    words = [w.strip(".,;:!?\"'()[]{}“”‘’") for w in request.split()]
    words = [w for w in words if w]
    spans: list[str] = []
    for size in range(1, longest + 1):
        for i in range(len(words) - size + 1):
            span = " ".join(words[i : i + size])
            if span not in spans and len(span) <= 80:
                spans.append(span)
    whole = " ".join(request.split())
    return [*spans[:limit], *([whole] if whole and whole not in spans and len(whole) <= MAX_STRING else [])]


def grammar_schema(schema: dict[str, Any], spans: Sequence[str] = ()) -> dict[str, Any]:
    """`schema` for constrained decoding: objects closed, strings bounded, or (given `spans`) one of the
    request's spans. Validation still uses the tool's own schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(value, dict):
            out[key] = (
                {k: grammar_schema(v, spans) for k, v in value.items()}
                if key in ("properties", "$defs", "definitions")
                else grammar_schema(value, spans)
            )
        elif isinstance(value, list):
            out[key] = [grammar_schema(v, spans) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    free = not {"maxLength", "enum", "const", "pattern", "format"} & out.keys()
    if out.get("type") == "string" and free and spans:
        out["enum"] = list(spans)
    elif out.get("type") == "string" and free:
        out["maxLength"] = MAX_STRING
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.get("type") == "object" and "properties" not in out:
        out.setdefault("properties", {})
    return out


def schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why `arguments` do not fit the tool's schema, or None."""
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return None  # the server's schema is its business; the server still validates
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].path) or "arguments"
    return f"{where}: {errors[0].message}"


def response_format(client: ModelClient, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The request's `response_format` that constrains the reply to `schema` on this endpoint."""
    if client.endpoint.structured_output == "json_object":  # llama.cpp's grammar-constrained JSON
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


def fence(text: str) -> str:
    """A markdown code fence longer than any run of backticks in `text` (a result cannot close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


class McpSpecialist:
    """The tools of one MCP server, used for a request."""

    def __init__(
        self,
        name: str,
        title: str,
        toolbox: McpToolbox,
        model: ModelClient | None,
        values_from_request: Literal["auto", "on", "off"] = "auto",
    ) -> None:
        self.name = name
        self.title = title
        self.toolbox = toolbox
        self._model = model
        grammar = model is not None and model.endpoint.structured_output == "json_object"
        self._spans = values_from_request == "on" or (values_from_request == "auto" and grammar)

    def _listing(self, tools: Sequence[McpTool]) -> str:
        return ", ".join(f"`{t.name}`" for t in tools)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        try:
            tools = await self.toolbox.tools()
        except EnsembleError as exc:
            return SpecialistResult(content=str(exc), error=True)
        if not tools:
            return SpecialistResult(content=NO_TOOLS.format(title=self.title), error=True)
        listing = self._listing(tools)
        if not request.strip():
            return SpecialistResult(
                content=EMPTY_REQUEST.format(title=self.title, tools=listing, name=self.name), error=True
            )
        direct = self._direct(request, tools)
        if direct is not None:
            tool, arguments = direct
            if arguments is not None:
                return await self._call_once(tool, arguments)
            return await self._with_model(tool, request, tools)
        if self._model is None:
            return SpecialistResult(
                content=NO_MODEL.format(title=self.title, name=self.name, tools=listing), error=True
            )
        if len(tools) == 1:
            return await self._with_model(tools[0], request, tools)
        try:
            tool = await self._choose(request, tools)
        except UnusableReply as exc:
            return SpecialistResult(
                content=UNUSABLE_CHOICE.format(title=self.title, reason=exc, tools=listing), error=True
            )
        except Exception as exc:
            return self._model_failed(exc)
        return await self._with_model(tool, request, tools)

    def _direct(self, request: str, tools: Sequence[McpTool]) -> tuple[McpTool, dict[str, Any] | None] | None:
        """A request that names a tool first: `<tool> {json}` is a call as written (also `<tool>` alone when
        it needs no arguments); `<tool> words` leaves the arguments to the model (None)."""
        by_name = {t.name: t for t in tools}
        match = DIRECT.match(request)
        if match and match.group("tool") in by_name:
            tool, raw = by_name[match.group("tool")], match.group("args")
            if raw is None:
                return tool, None if tool.input_schema.get("required") else {}
            try:
                arguments = json.loads(raw)
            except json.JSONDecodeError:
                return tool, None
            return tool, arguments if isinstance(arguments, dict) else None
        words = request.split(maxsplit=1)
        if len(words) == 2 and words[0].rstrip(":") in by_name:
            return by_name[words[0].rstrip(":")], None
        return None

    async def _ask_json(self, messages: list[BaseMessage], name: str, schema: dict[str, Any]) -> tuple[str, Any]:
        assert self._model is not None
        llm = self._model.llm.bind(
            response_format=response_format(self._model, name, schema), stream=False, temperature=0
        )
        reply = await llm.ainvoke(messages, config={"run_name": f"mcp.{self.name}.{name}"})
        text = reply.text
        try:
            return text, json.loads(text, strict=False)
        except json.JSONDecodeError as exc:
            raise UnusableReply(f"the reply was not JSON ({exc.msg})") from exc

    async def _choose(self, request: str, tools: Sequence[McpTool]) -> McpTool:
        names = [t.name for t in tools]
        schema = {"type": "object", "properties": {"tool": {"type": "string", "enum": names}}, "required": ["tool"]}
        listing = "\n".join(f"- {t.name}: {' '.join(t.description.split())[:300]}" for t in tools)
        prompt = CHOOSE_TOOL_PROMPT.format(server=self.name, tools=listing, request=request)
        _, value = await self._ask_json([HumanMessage(prompt)], "tool", schema)
        chosen = value.get("tool") if isinstance(value, dict) else None
        tool = next((t for t in tools if t.name == chosen), None)
        if tool is None:
            raise UnusableReply(f"it named no tool of this server ({chosen!r})")
        return tool

    async def _with_model(self, tool: McpTool, request: str, tools: Sequence[McpTool]) -> SpecialistResult:
        """Arguments from the model; a refusal goes back to it once, fenced, then a readable message."""
        if self._model is None:
            listing = self._listing(tools)
            return SpecialistResult(
                content=NO_MODEL.format(title=self.title, name=self.name, tools=listing), error=True
            )
        schema = tool.input_schema or {"type": "object", "properties": {}}
        prompt = ARGUMENTS_PROMPT.format(
            tool=tool.name,
            server=self.name,
            description=" ".join(tool.description.split())[:500],
            schema=json.dumps(schema)[:2000],
            request=request,
        )
        messages: list[BaseMessage] = [HumanMessage(prompt)]
        calls: list[Artifact] = []
        problem = ""
        for attempt in (1, 2):
            try:
                constrained = grammar_schema(schema, request_spans(request) if self._spans else ())
                text, arguments = await self._ask_json(messages, "arguments", constrained)
            except UnusableReply as exc:
                text, arguments, problem = "", None, str(exc)
            except Exception as exc:
                return self._model_failed(exc, calls)
            if arguments is not None:
                problem = (
                    schema_problem(schema, arguments)
                    if isinstance(arguments, dict)
                    else "the arguments must be a JSON object"
                ) or ""
            if not problem and isinstance(arguments, dict):
                call, result, failure = await self._attempt(tool, arguments)
                calls.append(call)
                if isinstance(failure, McpToolError):
                    problem = str(failure)
                elif failure is not None:  # unreachable, too slow, paused: no retry
                    return SpecialistResult(content=str(failure), artifacts=tuple(calls), error=True)
                else:
                    return self._answer(tool, result or "", calls)
            log.info("%s: arguments for %s refused (attempt %d): %s", self.name, tool.name, attempt, problem)
            nonce = secrets.token_hex(6)
            messages = [
                *messages,
                AIMessage(content=text or "{}"),
                HumanMessage(RETRY_PROMPT.format(nonce=nonce, error=problem.replace(nonce, "······"))),
            ]
        return SpecialistResult(
            content=GAVE_UP.format(title=self.title, tool=tool.name, error=problem, name=self.name),
            artifacts=tuple(calls),
            error=True,
        )

    async def _call_once(self, tool: McpTool, arguments: dict[str, Any]) -> SpecialistResult:
        """A direct call with the user's own arguments: the server's answer or reason, as is."""
        call, result, failure = await self._attempt(tool, arguments)
        if isinstance(failure, McpToolError):
            text = TOOL_FAILED.format(title=self.title, tool=tool.name, error=failure)
            return SpecialistResult(content=text, artifacts=(call,), error=True)
        if failure is not None:
            return SpecialistResult(content=str(failure), artifacts=(call,), error=True)
        return self._answer(tool, result or "", [call])

    async def _attempt(
        self, tool: McpTool, arguments: dict[str, Any]
    ) -> tuple[Artifact, str | None, McpToolError | EnsembleError | None]:
        """One call: its record for the chat (tool, arguments, result or error, seconds), the result, or
        the failure (the server's error, or a readable outage)."""
        started = time.perf_counter()
        try:
            result = await self.toolbox.call(tool, arguments)
        except (McpToolError, EnsembleError) as exc:
            return self._artifact(tool, arguments, str(exc), time.perf_counter() - started, True), None, exc
        return self._artifact(tool, arguments, result, time.perf_counter() - started), result, None

    def _answer(self, tool: McpTool, result: str, calls: list[Artifact]) -> SpecialistResult:
        content = RESULT_TEMPLATE.format(title=self.title, tool=tool.name, result=result, fence=fence(result))
        return SpecialistResult(content=content, artifacts=tuple(calls))

    def _artifact(
        self, tool: McpTool, arguments: dict[str, Any], result: str, seconds: float, error: bool = False
    ) -> Artifact:
        meta = {"server": self.name, "tool": tool.name, "arguments": arguments, "error": error, "seconds": seconds}
        return Artifact(kind="tool_call", name=f"{self.name}.{tool.name}", content=result, meta=meta)

    def _model_failed(self, exc: Exception, calls: Sequence[Artifact] = ()) -> SpecialistResult:
        assert self._model is not None
        reason = describe_server_error(exc, what=self._model.where, timeout=self._model.endpoint.timeout)
        if reason is None:
            raise exc
        return SpecialistResult(content=reason, artifacts=tuple(calls), error=True)
