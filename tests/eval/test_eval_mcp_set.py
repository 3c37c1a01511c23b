"""The routing set of the test MCP server (agents/eval/sets/mcp-orders.yaml): `ensemble-eval` offers the
router the MCP specialists configured in the settings, with their tools, so every label of the set is a
specialist it can choose. The server is the `mcp` SDK's real one (no model is involved here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agents.eval.dataset import DEFAULT_DATASET, load_dataset
from agents.eval.runner import offered_specs
from agents.specialists.registry import configured_specs
from core.settings import McpSettings, Settings
from tests.conftest import free_port
from tests.support.mcp_fixtures import HttpMcpServer

MCP_SET = DEFAULT_DATASET.with_name("mcp-orders.yaml")


async def test_the_mcp_set_labels_only_specialists_offered_with_the_server_configured(tmp_path: Path) -> None:
    items = load_dataset(MCP_SET)
    labels = {name for item in items for name in item.specialists()}
    assert "orders" in labels and len([i for i in items if i.expect == {"orders"}]) >= 6

    plain, _ = offered_specs()
    assert "orders" not in {spec.name for spec in plain}, "without the server there is no such specialist"

    server = HttpMcpServer(free_port(), tmp_path / "calls.jsonl")
    await asyncio.to_thread(server.start)
    try:
        settings = Settings(data_dir=tmp_path, mcp=McpSettings(servers={"orders": server.settings()}), _env_file=None)  # type: ignore[call-arg]
        specs, _ = offered_specs(await configured_specs(settings))
    finally:
        await asyncio.to_thread(server.stop)
    by_name = {spec.name: spec for spec in specs}
    assert labels <= set(by_name)
    assert "order_status" in by_name["orders"].description and "book_room" in by_name["orders"].description
    # its exemplars come from the settings and the tools, never from the evaluation set
    assert not {item.text for item in items} & set(by_name["orders"].exemplars)
