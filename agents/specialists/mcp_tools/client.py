"""One MCP server's tools, reached through `langchain-mcp-adapters` over the `mcp` SDK.

An operator's server is reached with a fresh session per call (Streamable HTTP, or a stdio process that
lives for that call), so a server that restarts, or comes up after the app, simply works on the next
turn. A user's server arrives as the live `ClientSession` Chainlit opened for them. Every call has a time
limit, and outages (unreachable, timed out, crashed) feed a circuit breaker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.tools import BaseTool, ToolException
from langchain_mcp_adapters.sessions import Connection
from langchain_mcp_adapters.tools import load_mcp_tools

from core.errors import EnsembleError, describe_server_error
from core.resilience import CircuitBreaker
from core.settings import McpServerSettings

if TYPE_CHECKING:
    from mcp import ClientSession

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 4000


class McpUnavailable(EnsembleError):
    """The server could not be used (unreachable, too slow, crashed, circuit open); the message says so."""


class McpToolError(Exception):
    """The server answered the call with an error (`isError`): a refusal of the arguments, or a failure."""


@dataclass(frozen=True)
class McpTool:
    """A tool as the server describes it, with the LangChain tool that calls it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    tool: BaseTool


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside the exception groups that anyio task groups raise."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def result_text(content: Any) -> str:
    """A tool's converted content (text blocks, images, files) as text, truncated."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                parts.append(f"[{block.get('type', 'content')}: {block.get('mime_type') or block.get('url') or ''}]")
            else:
                parts.append(str(block))
        text = "\n".join(parts)
    else:
        text = json.dumps(content, default=str)
    return text if len(text) <= MAX_RESULT_CHARS else text[: MAX_RESULT_CHARS - 1] + "…"


def command_allowed(command: str, allowed: Sequence[str]) -> bool:
    """Whether a stdio server's command is on the allow-list (as written, or as the path it resolves to)."""
    resolved = shutil.which(command)
    return command in allowed or (resolved is not None and resolved in {shutil.which(a) or a for a in allowed})


def connection_for(server: McpServerSettings) -> Connection:
    """The adapters' connection config of an operator's server (header secrets revealed only here)."""
    if server.transport == "stdio":
        assert server.command is not None
        return {"transport": "stdio", "command": server.command, "args": list(server.args)}
    assert server.url is not None
    headers = {k: v.get_secret_value() for k, v in server.headers.items()}
    return {
        "transport": "streamable_http",
        "url": server.url,
        "headers": headers or None,
        "timeout": server.timeout,
        "sse_read_timeout": server.timeout,
    }


class McpToolbox:
    """The tools of one MCP server: listed once (again after a failure), each call time-limited."""

    def __init__(
        self,
        what: str,
        *,
        timeout: float,
        connection: Connection | None = None,
        session: ClientSession | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.what = what  # e.g. "The MCP server “tickets”", for messages
        self.timeout = timeout
        self._connection = connection
        self._session = session
        self.breaker = breaker or CircuitBreaker(what)
        self._tools: list[McpTool] | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    @property
    def state(self) -> str:
        """For /readyz: `ready`, `paused` (circuit open), or `unreachable: <why>`."""
        if self.breaker.state == "open":
            return "paused: " + (self.last_error or "repeated failures")
        if self.last_error is not None:
            return "unreachable: " + self.last_error
        return "ready" if self._tools is not None else "not yet reached"

    async def tools(self, within: float | None = None) -> list[McpTool]:
        """The server's tools, listed on first use (in `within` seconds, else the call limit); raises
        `McpUnavailable`."""
        async with self._lock:
            if self._tools is None:
                self.breaker.check()
                limit = within or self.timeout
                try:
                    found = await asyncio.wait_for(
                        load_mcp_tools(self._session, connection=self._connection, handle_tool_errors=False),
                        timeout=limit,
                    )
                except Exception as exc:
                    raise self._outage(exc, limit, "listing its tools") from exc
                self._tools = [
                    McpTool(t.name, t.description or "", t.args_schema if isinstance(t.args_schema, dict) else {}, t)
                    for t in found
                ]
                self.breaker.record(None)
                self.last_error = None
            return self._tools

    async def call(self, tool: McpTool, arguments: dict[str, Any]) -> str:
        """The tool's result as text; raises `McpToolError` (the server's error) or `McpUnavailable`."""
        self.breaker.check()
        started = time.perf_counter()
        try:
            content = await asyncio.wait_for(tool.tool.ainvoke(arguments), timeout=self.timeout)
        except ToolException as exc:  # the server answered with isError: it is up
            self.breaker.record(None)
            raise McpToolError(result_text(str(exc)) or "the tool reported an error without a reason") from exc
        except Exception as exc:
            leaf = _leaf(exc)
            if isinstance(leaf, ToolException):
                self.breaker.record(None)
                raise McpToolError(result_text(str(leaf))) from exc
            self._tools = None  # list them again next time: the server may have changed or restarted
            raise self._outage(exc, self.timeout, f"calling `{tool.name}`") from exc
        log.info("%s: %s answered in %.2f s", self.what, tool.name, time.perf_counter() - started)
        self.breaker.record(None)
        self.last_error = None
        return result_text(content)

    def _outage(self, exc: BaseException, limit: float, doing: str) -> McpUnavailable:
        leaf = _leaf(exc)
        if isinstance(leaf, EnsembleError):  # the circuit is open
            return McpUnavailable(str(leaf))
        self.breaker.record(leaf, outage=True)
        if isinstance(leaf, TimeoutError | asyncio.TimeoutError):
            text = f"{self.what} did not answer within {limit:g} s ({doing}). It may be overloaded; try again shortly."
        else:
            described = describe_server_error(leaf, what=self.what, timeout=limit)
            if described is None:
                log.warning("%s failed while %s", self.what, doing, exc_info=exc)
                detail = " ".join(str(leaf).split())[:200]
                described = (
                    f"{self.what} failed while {doing} ({type(leaf).__name__}{': ' + detail if detail else ''})."
                )
            text = described
        self.last_error = text
        return McpUnavailable(text)
