"""MCP servers as specialists: one per server an operator configures (`ENSEMBLE_MCP__SERVERS`), and one
per server a user connects in the chat (Chainlit's MCP support), kept in that user's session only.

Their specs are made at startup, not listed in `registry.all_specs()`: `operator_specs(settings)` lists
each server's tools (with a time limit; a server that is down is still a specialist, reached again on
use) so that the router sees its name, description and tools. `user_specialist` does the same for a user's
live session.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agents.specialists.base import Services, Specialist, SpecialistSpec
from agents.specialists.mcp_tools.client import (
    McpTool,
    McpToolbox,
    McpUnavailable,
    command_allowed,
    connection_for,
)
from agents.specialists.mcp_tools.specialist import McpSpecialist
from core.errors import EnsembleError
from core.models import SUPERVISOR, ModelClient
from core.settings import McpServerSettings, McpSettings, Settings

if TYPE_CHECKING:
    from mcp import ClientSession

MODEL = SUPERVISOR  # chooses the tool and writes its arguments
NEVER = re.compile(r"(?!)")  # an MCP specialist is asked for by the router or its command, not by phrases
MAX_DESCRIPTION = 600


def describe(description: str, tools: Sequence[McpTool]) -> str:
    """What the router reads: the server's purpose, then its tools and what each does."""
    listing = "; ".join(
        f"{t.name}: {' '.join(t.description.split())[:120]}" if t.description else t.name for t in tools
    )
    text = " ".join(description.split())
    if listing:
        text = f"{text} Tools: {listing}." if text else f"Tools: {listing}."
    text = text or "An MCP server (its tools could not be listed yet)."
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def exemplars_of(configured: Sequence[str], tools: Sequence[McpTool]) -> tuple[str, ...]:
    """The operator's exemplar requests, then each tool's description as one more."""
    seen: list[str] = []
    for text in [*configured, *(" ".join(t.description.split())[:200] for t in tools)]:
        if text and text not in seen:
            seen.append(text)
    return tuple(seen)


def _state(specialist: Specialist) -> str:
    return specialist.toolbox.state if isinstance(specialist, McpSpecialist) else "ready"


def _spec(
    name: str, server: McpServerSettings, toolbox: McpToolbox | None, tools: Sequence[McpTool], hint: str
) -> SpecialistSpec:
    title = f"MCP {name}"

    def build(services: Services) -> McpSpecialist | None:
        if toolbox is None:
            return None
        return McpSpecialist(name, title, toolbox, services.model(MODEL), services.settings.mcp.values_from_request)

    return SpecialistSpec(
        name=name,
        title=title,
        description=describe(server.description, tools),
        enable_hint=hint,
        asks_for=NEVER,
        build=build,
        model_role=MODEL,
        command=f"/{name}",
        exemplars=exemplars_of(server.exemplars, tools),
        state=_state,
    )


async def operator_specs(settings: Settings, taken: Sequence[str] = ()) -> list[SpecialistSpec]:
    """A spec per configured server (names in `taken`, the built-in specialists', are refused), each
    with its tools as listed now; a stdio command off the allow-list makes a switched-off spec."""
    mcp = settings.mcp

    async def one(name: str, server: McpServerSettings) -> SpecialistSpec:
        if server.transport == "stdio" and not command_allowed(server.command or "", mcp.allowed_commands):
            hint = f"add {server.command!r} to ENSEMBLE_MCP__ALLOWED_COMMANDS (stdio servers run only allowed commands)"
            return _spec(name, server, None, (), hint)
        toolbox = McpToolbox(f"The MCP server “{name}”", timeout=server.timeout, connection=connection_for(server))
        try:
            tools = await toolbox.tools(within=mcp.discovery_timeout)
        except EnsembleError:
            tools = []  # /readyz says why; the next turn that needs it tries again
        return _spec(name, server, toolbox, tools, "check that the MCP server is running (see /readyz)")

    servers = [(n, s) for n, s in mcp.servers.items() if n not in taken]
    return list(await asyncio.gather(*(one(n, s) for n, s in servers)))


def user_name(label: str) -> str:
    """The specialist name of a user's connection: `my_<label>` in the names' alphabet."""
    slug = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")[:30] or "server"
    return f"my_{slug}"


async def user_specialist(
    label: str, session: ClientSession, model: ModelClient | None, settings: McpSettings
) -> tuple[SpecialistSpec, McpSpecialist]:
    """A specialist over a user's own live MCP session (raises `McpUnavailable` if its tools cannot be
    listed). It lives in that user's chat session and is handed to their turns only."""
    name = user_name(label)
    toolbox = McpToolbox(f"Your MCP server “{label}”", timeout=settings.user_timeout, session=session)
    tools = await toolbox.tools()
    title = f"Your MCP {label}"
    specialist = McpSpecialist(name, title, toolbox, model, settings.values_from_request)
    spec = SpecialistSpec(
        name=name,
        title=title,
        description=describe(f"The user's own MCP server “{label}”.", tools),
        enable_hint="connect it again from the MCP button of the chat",
        asks_for=NEVER,
        build=lambda services: specialist,
        model_role=MODEL,
        command=f"/{name}",
        exemplars=exemplars_of((), tools),
        state=_state,
    )
    return spec, specialist


__all__ = ["McpSpecialist", "McpUnavailable", "operator_specs", "user_name", "user_specialist"]
