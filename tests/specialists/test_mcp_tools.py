"""The MCP specialist's pure parts: the schema a model's arguments are constrained by, the request's
spans a small model chooses from, direct calls, a fence a result cannot close, what the router reads."""

from __future__ import annotations

from typing import Any

from agents.specialists.mcp_tools import describe, exemplars_of, user_name
from agents.specialists.mcp_tools.client import McpTool, command_allowed, result_text
from agents.specialists.mcp_tools.specialist import (
    McpSpecialist,
    fence,
    grammar_schema,
    request_spans,
    schema_problem,
)

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "title": "Order Id"}, "count": {"type": "integer"}},
    "required": ["order_id"],
}


def tool(name: str, schema: dict[str, Any] | None = None, description: str = "") -> McpTool:
    return McpTool(name, description, schema or {"type": "object", "properties": {}}, tool=None)  # type: ignore[arg-type]


def test_grammar_schema_closes_objects_and_bounds_or_offers_strings() -> None:
    bounded = grammar_schema(ORDER_SCHEMA)
    assert bounded["additionalProperties"] is False
    assert bounded["properties"]["order_id"]["maxLength"] == 300
    assert bounded["properties"]["count"] == {"type": "integer"}
    offered = grammar_schema(ORDER_SCHEMA, ["ORD-2077", "order ORD-2077"])
    assert offered["properties"]["order_id"]["enum"] == ["ORD-2077", "order ORD-2077"]
    assert ORDER_SCHEMA["properties"]["order_id"] == {"type": "string", "title": "Order Id"}, "original untouched"
    fixed = grammar_schema({"type": "object", "properties": {"unit": {"type": "string", "enum": ["c", "f"]}}}, ["x"])
    assert fixed["properties"]["unit"]["enum"] == ["c", "f"], "a tool's own enum wins"


def test_request_spans_are_words_and_short_phrases_of_the_request() -> None:
    spans = request_spans("Where is order ORD-2077, please?")
    assert "ORD-2077" in spans and "order ORD-2077" in spans and "please" in spans
    assert "Where is order ORD-2077, please?" in spans, "the whole request, for free-text arguments"
    assert all(len(s.split()) <= 3 for s in spans[:-1])


def test_schema_problem_names_the_argument() -> None:
    assert schema_problem(ORDER_SCHEMA, {"order_id": "x", "count": 2}) is None
    problem = schema_problem(ORDER_SCHEMA, {"order_id": "x", "count": "two"})
    assert problem is not None and problem.startswith("count:")
    assert "required" in (schema_problem(ORDER_SCHEMA, {}) or "")


def test_direct_calls_name_a_tool_first() -> None:
    specialist = McpSpecialist("orders", "MCP orders", toolbox=None, model=None)  # type: ignore[arg-type]
    tools = [tool("order_status", ORDER_SCHEMA), tool("ping")]
    assert specialist._direct('order_status {"order_id": "A"}', tools) == (tools[0], {"order_id": "A"})
    assert specialist._direct("ping", tools) == (tools[1], {}), "no required arguments: called as is"
    assert specialist._direct("order_status", tools) == (tools[0], None), "its arguments are the model's"
    assert specialist._direct("order_status: where is ORD-1", tools) == (tools[0], None)
    assert specialist._direct("order_status {broken", tools) == (tools[0], None)
    assert specialist._direct("where is my order?", tools) is None


def test_a_fence_is_longer_than_any_backtick_run_in_the_result() -> None:
    assert fence("plain") == "```"
    assert fence("a ```` b") == "`````"


def test_what_the_router_reads_and_learns_from() -> None:
    tools = [tool("order_status", description="Looks up an order."), tool("ping")]
    text = describe("The order desk.", tools)
    assert text == "The order desk. Tools: order_status: Looks up an order.; ping."
    assert len(describe("x" * 2000, tools)) <= 600
    assert exemplars_of(["where is my parcel"], tools) == ("where is my parcel", "Looks up an order.")
    assert user_name("My Jira (work)") == "my_my_jira_work"


def test_result_text_and_the_stdio_allow_list() -> None:
    blocks = [{"type": "text", "text": "one"}, {"type": "image", "mime_type": "image/png"}]
    assert result_text(blocks) == "one\n[image: image/png]"
    assert result_text("x" * 5000).endswith("…") and len(result_text("x" * 5000)) == 4000
    assert command_allowed("python3", ["python3"]) and not command_allowed("bash", ["python3"])
