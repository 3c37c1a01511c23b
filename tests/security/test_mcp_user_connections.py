"""A user's own MCP server, connected through Chainlit's MCP support (`POST /mcp`, what the MCP button
sends) in the running app: it serves that user's chat session, and never another user's turns, even at
the same time and naming it; a URL off `ENSEMBLE_MCP__USER_ALLOWED_URLS` is refused. The server is the
`mcp` SDK's real one; both users talk to the app over its socket.io protocol, as the web front-end does."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import start_app
from tests.conftest import free_port
from tests.security.conftest import USERS, create_users
from tests.support.chat_client import ChatSocket, signed_in
from tests.support.mcp_fixtures import HttpMcpServer, calls_in

pytestmark = [pytest.mark.llm, pytest.mark.own_app]

CALL = '/my_desk add_numbers {"a": 19, "b": 23}'


async def test_a_users_mcp_connection_serves_only_their_turns(local_llm: LocalLLMSettings, tmp_path: Path) -> None:
    server = HttpMcpServer(free_port(), tmp_path / "calls.jsonl")
    await asyncio.to_thread(server.start)
    extra = {"ENSEMBLE_MCP__USER_ALLOWED_URLS": json.dumps([f"http://127.0.0.1:{server.port}/"])}
    create_users(tmp_path, {**os.environ, **extra}, ("alice", "bob"))
    app = await asyncio.to_thread(start_app, tmp_path, local_llm.port, extra)
    alice_http = await signed_in(app.url, "alice", USERS["alice"])
    bob_http = await signed_in(app.url, "bob", USERS["bob"])
    alice, bob = ChatSocket(app.url, alice_http), ChatSocket(app.url, bob_http)
    try:
        await alice.connect()
        await bob.connect()
        settings = (await alice_http.get("/project/settings")).json()
        assert settings["features"]["mcp"]["user_servers"]["enabled"] is True, "the MCP button is on"

        # a URL off the allow-list is refused by Chainlit before anything connects
        refused = await bob_http.post(
            "/mcp",
            json={
                "sessionId": bob.session_id,
                "name": "elsewhere",
                "clientType": "streamable-http",
                "url": "http://127.0.0.2:9/mcp",
            },
        )
        assert refused.status_code >= 400 and "allowed" in refused.text, refused.text
        # bob cannot attach a server to alice's session
        hijack = await bob_http.post(
            "/mcp",
            json={"sessionId": alice.session_id, "name": "desk", "clientType": "streamable-http", "url": server.url},
        )
        assert hijack.status_code == 401, hijack.text

        connected = await alice_http.post(
            "/mcp",
            json={"sessionId": alice.session_id, "name": "desk", "clientType": "streamable-http", "url": server.url},
        )
        assert connected.status_code == 200, connected.text
        note = await alice.wait_event("new_message", limit=30)
        assert "Connected your MCP server “desk”" in str(note.get("output")), note

        mine, theirs = await asyncio.gather(alice.send(CALL), bob.send(CALL))
        assert "The sum of 19 and 23 is 42." in mine.answer, mine.answer
        assert "The sum of 19 and 23" not in theirs.answer, theirs.answer
        assert calls_in(server.calls) == [{"tool": "add_numbers", "arguments": {"a": 19, "b": 23}}]

        # bob's own later turns, in a new chat, still cannot reach it
        again = ChatSocket(app.url, bob_http)
        await again.connect()
        try:
            later = await again.send('/my_desk order_status {"order_id": "ORD-1042"}')
            assert "Parcel Co" not in later.answer, later.answer
        finally:
            await again.close()
        assert len(calls_in(server.calls)) == 1
    finally:
        await alice.close()
        await bob.close()
        await alice_http.aclose()
        await bob_http.aclose()
        await asyncio.to_thread(app.stop)
        await asyncio.to_thread(server.stop)
