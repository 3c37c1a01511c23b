"""The test MCP server (tests/support/mcp_server.py) as a real process: over Streamable HTTP, or as the
settings of a stdio server that the app starts itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import McpServerSettings

SERVER_SCRIPT = Path(__file__).with_name("mcp_server.py")


def calls_in(path: Path) -> list[dict[str, Any]]:
    """The tool calls that reached the server, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the MCP test server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the MCP test server did not listen in time")


@dataclass
class HttpMcpServer:
    """The test server over Streamable HTTP, in a process of its own that a test may stop and start."""

    port: int
    calls: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        log = self.calls.with_suffix(".log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), "http", str(self.port), str(self.calls)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def settings(self, **overrides: Any) -> McpServerSettings:
        fields: dict[str, Any] = {
            "description": "The shop's order desk: order status, sums, tickets and shared notes.",
            "url": self.url,
            "timeout": 5.0,
            **overrides,
        }
        return McpServerSettings(**fields)


def stdio_settings(calls: Path, **overrides: Any) -> McpServerSettings:
    """The test server as a stdio server: the app runs `python mcp_server.py stdio <calls>` per call."""
    fields: dict[str, Any] = {
        "description": "The shop's order desk over stdio.",
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVER_SCRIPT), "stdio", str(calls)],
        "timeout": 20.0,
        **overrides,
    }
    return McpServerSettings(**fields)
