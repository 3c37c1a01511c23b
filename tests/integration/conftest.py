"""Fixtures shared by the integration tests: the `mcp` SDK's real test server over Streamable HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.mcp_fixtures import HttpMcpServer


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[HttpMcpServer]:
    server = HttpMcpServer(free_port(), tmp_path / "calls.jsonl")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)
