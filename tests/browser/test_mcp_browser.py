"""An operator's MCP server in the running app: the chat shows the MCP step, and inside it the tool call
with its arguments (input) and the server's result (output). The server is the `mcp` SDK's real one."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import create_users, last_answer, login, send, start_app
from tests.conftest import free_port
from tests.support.mcp_fixtures import HttpMcpServer, calls_in

pytestmark = [pytest.mark.browser, pytest.mark.llm, pytest.mark.own_app]


def test_the_step_shows_the_mcp_tool_call_with_its_input_and_output(
    local_llm: LocalLLMSettings, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    server = HttpMcpServer(free_port(), tmp_path / "calls.jsonl")
    server.start()
    servers = {"orders": {"description": "The shop's order desk.", "url": server.url, "timeout": 10}}
    extra = {"ENSEMBLE_MCP__SERVERS": json.dumps(servers)}
    create_users(tmp_path, {**os.environ, **extra})
    app = start_app(tmp_path, local_llm.port, extra)
    try:
        ready = httpx.get(f"{app.url}/readyz", timeout=10).json()
        assert ready["specialists"]["orders"] == "ready", ready  # its tools were listed at startup
        page = login(browser, app.url, "alice")
        send(page, '/orders order_status {"order_id": "ORD-1042"}')
        assert "shipped on 2026-11-30 by Parcel Co" in last_answer(page)

        step = page.get_by_text(re.compile(r"Used MCP orders \(\d+\.\d s\)"))
        step.wait_for(timeout=10_000)
        step.click()  # open the MCP step: the tool call is a step inside it
        call = page.get_by_text(re.compile(r"Used orders\.order_status"))
        call.wait_for(timeout=10_000)
        call.click()  # open the tool call: its arguments and its result
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts_dir / "browser-mcp-step.png"), full_page=True)
        body = page.locator("body").inner_text()
        page.context.close()

        assert '"order_id": "ORD-1042"' in body, "the tool's arguments are shown as its input"
        # the result shows as the tool step's output, besides the answer
        assert body.count("Order ORD-1042: shipped on 2026-11-30 by Parcel Co, tracking PC-88231.") >= 2, body
        assert calls_in(server.calls) == [{"tool": "order_status", "arguments": {"order_id": "ORD-1042"}}]
    finally:
        app.stop()
        server.stop()
