"""MCP servers as specialists, against the `mcp` SDK's real server (tests/support/mcp_server.py) over
Streamable HTTP and stdio: direct tool calls, faults (down, slow, error) as readable messages with the
next turn working, the circuit breaker and /readyz state, the stdio allow-list, and a user's own
connection that no other user's turn can reach.

These turns name the tool themselves (`/orders <tool> {json}`), so no chat model is involved; the
model's part (choosing the tool, writing arguments) is in test_mcp_llm.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agents.runtime import Ensemble
from agents.specialists.registry import Entry
from agents.supervisor.events import StepFinished, StepStarted, TurnEvent, TurnFinished
from core.models import ModelClients
from core.settings import McpServerSettings, McpSettings, Settings
from tests.conftest import free_port
from tests.support.mcp_fixtures import HttpMcpServer, calls_in, stdio_settings


def settings_for(tmp_path: Path, servers: dict[str, McpServerSettings], **mcp: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        mcp=McpSettings(servers=servers, **mcp),
        _env_file=None,  # type: ignore[call-arg]
    )


async def start(settings: Settings) -> Ensemble:
    # no chat model: these turns call tools by command, and a model must not be needed for that
    return await Ensemble.start(settings, models=ModelClients(), with_documents=False, with_memory=False)


async def turn(
    service: Ensemble, text: str, *, user: str = "u", thread: str = "t", connected: tuple[Entry, ...] = ()
) -> list[TurnEvent]:
    return [e async for e in service.stream_turn(thread_id=thread, user_id=user, text=text, connected=connected)]


def finished(events: list[TurnEvent]) -> TurnFinished:
    assert isinstance(events[-1], TurnFinished), events[-1]
    return events[-1]


def step_of(events: list[TurnEvent]) -> StepFinished:
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert len(steps) == 1, events
    return steps[0]


ORDER = '/orders order_status {"order_id": "ORD-1042"}'
SUM = '/orders add_numbers {"a": 19, "b": 23}'


async def test_http_server_is_a_specialist_whose_tool_call_is_a_visible_step(
    http_server: HttpMcpServer, tmp_path: Path
) -> None:
    service = await start(settings_for(tmp_path, {"orders": http_server.settings()}))
    try:
        spec = service.registry.available["orders"].spec
        # the router sees the server's purpose and every tool with what it does
        assert "order desk" in spec.description and "order_status" in spec.description
        assert "add_numbers: Adds two whole numbers" in spec.description
        assert "Looks up the shipping status of a customer order by its id, e.g. ORD-1042." in spec.exemplars
        assert service.status()["orders"] == "ready"

        events = await turn(service, ORDER)
        started = [e for e in events if isinstance(e, StepStarted)]
        assert [(s.specialist, s.title) for s in started] == [("orders", "MCP orders")]
        step = step_of(events)
        assert not step.error
        (call,) = [a for a in step.artifacts if a.kind == "tool_call"]
        seconds = call.meta.pop("seconds")
        assert isinstance(seconds, float) and 0 < seconds < 5, "the call's cost is measured"
        assert call.meta == {
            "server": "orders",
            "tool": "order_status",
            "arguments": {"order_id": "ORD-1042"},
            "error": False,
        }
        assert call.content == "Order ORD-1042: shipped on 2026-11-30 by Parcel Co, tracking PC-88231."
        answer = finished(events).content
        assert "shipped on 2026-11-30 by Parcel Co" in answer and "`order_status`" in answer
        assert calls_in(http_server.calls) == [{"tool": "order_status", "arguments": {"order_id": "ORD-1042"}}]
    finally:
        await service.aclose()


async def test_stdio_server_runs_only_an_allowed_command(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    servers = {"desk": stdio_settings(calls)}
    refused = await start(settings_for(tmp_path / "a", servers))  # no allow-list: no stdio server
    try:
        assert "desk" in refused.registry.unavailable
        assert "ENSEMBLE_MCP__ALLOWED_COMMANDS" in refused.status()["desk"]
        answer = finished(await turn(refused, '/desk add_numbers {"a": 1, "b": 2}')).content
        assert "not enabled" in answer and "ENSEMBLE_MCP__ALLOWED_COMMANDS" in answer
        assert calls_in(calls) == [], "a command off the allow-list never ran"
    finally:
        await refused.aclose()

    import sys

    service = await start(settings_for(tmp_path / "b", servers, allowed_commands=[sys.executable]))
    try:
        assert "add_numbers" in service.registry.available["desk"].spec.description
        answer = finished(await turn(service, '/desk add_numbers {"a": 19, "b": 23}')).content
        assert "The sum of 19 and 23 is 42." in answer
        assert calls_in(calls) == [{"tool": "add_numbers", "arguments": {"a": 19, "b": 23}}]
    finally:
        await service.aclose()


async def test_server_down_is_a_readable_message_and_the_next_turn_works(
    http_server: HttpMcpServer, tmp_path: Path
) -> None:
    service = await start(settings_for(tmp_path, {"orders": http_server.settings(timeout=3.0)}))
    try:
        await asyncio.to_thread(http_server.stop)
        started = time.monotonic()
        events = await turn(service, ORDER)
        assert time.monotonic() - started < 10
        step = step_of(events)
        assert step.error
        assert "Could not reach The MCP server “orders”" in step.output, step.output
        assert "unreachable" in service.status()["orders"]
        await asyncio.to_thread(http_server.start)
        answer = finished(await turn(service, SUM)).content
        assert "The sum of 19 and 23 is 42." in answer
        assert service.status()["orders"] == "ready"
    finally:
        await service.aclose()


async def test_slow_tool_hits_the_time_limit_and_the_next_turn_works(
    http_server: HttpMcpServer, tmp_path: Path
) -> None:
    service = await start(settings_for(tmp_path, {"orders": http_server.settings(timeout=2.0)}))
    try:
        started = time.monotonic()
        step = step_of(await turn(service, '/orders slow_report {"seconds": 30}'))
        assert time.monotonic() - started < 2.0 + 4, "the user heard back within the time limit"
        assert step.error and "did not answer within 2 s" in step.output, step.output
        (call,) = [a for a in step.artifacts if a.kind == "tool_call"]
        assert call.meta["error"] and call.meta["arguments"] == {"seconds": 30}
        assert "The sum of 19 and 23 is 42." in finished(await turn(service, SUM)).content
    finally:
        await service.aclose()


async def test_tool_error_is_a_readable_message_and_the_next_turn_works(
    http_server: HttpMcpServer, tmp_path: Path
) -> None:
    service = await start(settings_for(tmp_path, {"orders": http_server.settings()}))
    try:
        step = step_of(await turn(service, "/orders broken_tool"))
        assert step.error
        assert "`broken_tool` failed" in step.output and "the warehouse database is offline" in step.output
        # the server's own validation of arguments given by hand: its reason, once, no retry without a model
        step = step_of(await turn(service, '/orders add_numbers {"a": "many", "b": 2}'))
        assert step.error and "add_numbers" in step.output and "validation error" in step.output.lower()
        assert [c["tool"] for c in calls_in(http_server.calls)] == ["broken_tool"], "FastMCP refused before the tool"
        assert "The sum of 19 and 23 is 42." in finished(await turn(service, SUM)).content
        assert service.status()["orders"] == "ready", "a tool's error is not an outage"
    finally:
        await service.aclose()


async def test_circuit_opens_after_repeated_outages_and_readyz_says_so(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    dead = McpServerSettings(url=f"http://127.0.0.1:{port}/mcp", timeout=2.0)
    service = await start(settings_for(tmp_path, {"orders": dead}, discovery_timeout=2.0))
    try:
        assert "unreachable" in service.status()["orders"], "startup tried once; the spec still exists"
        for _ in range(3):
            step = step_of(await turn(service, SUM))
            assert step.error
        step = step_of(await turn(service, SUM))
        assert "paused calls" in step.output, step.output
        assert service.status()["orders"].startswith("paused")
    finally:
        await service.aclose()


async def test_a_users_own_server_serves_only_that_users_turns(http_server: HttpMcpServer, tmp_path: Path) -> None:
    """Alice connects her MCP server (as Chainlit's MCP button does: a live session); Bob's turns, even at
    the same time and naming it, never reach it, and the deployment's specialists do not include it."""
    service = await start(settings_for(tmp_path, {}))
    try:
        async with streamable_http_client(http_server.url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            alice_desk = await service.connect_mcp("Desk", session)
            assert alice_desk.spec.name == "my_desk" and "order_status" in alice_desk.spec.description
            assert "my_desk" not in service.registry.available and "my_desk" not in service.status()

            call = '/my_desk add_numbers {"a": 19, "b": 23}'
            alice, bob = await asyncio.gather(
                turn(service, call, user="alice", thread="a", connected=(alice_desk,)),
                turn(service, call, user="bob", thread="b"),
            )
            assert "The sum of 19 and 23 is 42." in finished(alice).content
            assert not [e for e in bob if isinstance(e, StepStarted)], "no specialist ran for bob"
            assert "The sum of 19 and 23" not in finished(bob).content
            assert calls_in(http_server.calls) == [{"tool": "add_numbers", "arguments": {"a": 19, "b": 23}}]
            # bob's next turn in the same process still does not see it
            again = await turn(service, '/my_desk order_status {"order_id": "ORD-1042"}', user="bob", thread="b")
            assert "Parcel Co" not in finished(again).content
            assert len(calls_in(http_server.calls)) == 1
    finally:
        await service.aclose()


async def test_a_users_server_named_by_a_host_that_resolves_inside_is_refused(tmp_path: Path) -> None:
    """A user-connected URL whose name resolves to an internal address (here: localhost) is refused, even
    under an allowed prefix; only an IP address the operator wrote in the allow-list may be internal."""
    from core.outbound import OutboundRefused

    service = await start(settings_for(tmp_path, {}, user_allowed_urls=["http://localhost:9/", "http://127.0.0.1:9/"]))
    try:
        with pytest.raises(OutboundRefused, match="internal address"):
            await service.connect_mcp("desk", None, "http://localhost:9/mcp")  # type: ignore[arg-type]
        with pytest.raises(OutboundRefused, match="internal address"):
            await service.connect_mcp("desk", None, "http://169.254.169.254/mcp")  # type: ignore[arg-type]
    finally:
        await service.aclose()


def test_servers_and_header_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    servers = {
        "tickets": {
            "description": "Our ticket tracker.",
            "url": "https://tickets.internal/mcp",
            "timeout": 12,
            "exemplars": ["open a ticket for the broken printer"],
        }
    }
    monkeypatch.setenv("ENSEMBLE_MCP__SERVERS", json.dumps(servers))
    monkeypatch.setenv("ENSEMBLE_MCP__SERVERS__TICKETS__HEADERS__AUTHORIZATION", "Bearer s3cret")
    monkeypatch.setenv("ENSEMBLE_MCP__ALLOWED_COMMANDS", '["/usr/bin/uvx"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    tickets = settings.mcp.servers["tickets"]
    assert tickets.url == "https://tickets.internal/mcp" and tickets.timeout == 12
    assert tickets.exemplars == ["open a ticket for the broken printer"]
    assert tickets.headers["authorization"].get_secret_value() == "Bearer s3cret"
    assert "s3cret" not in repr(settings.mcp)
    assert settings.mcp.allowed_commands == ["/usr/bin/uvx"]


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ({"transport": "streamable_http"}, "needs an http(s) `url`"),
        ({"transport": "stdio"}, "needs a `command`"),
    ],
)
def test_a_server_without_its_target_is_refused(server: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        McpServerSettings(**server)


def test_server_names_are_identifiers() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        McpSettings(servers={"Bad Name": McpServerSettings(url="http://x/mcp")})
