"""An OpenAI-compatible chat server whose faults the test chooses (down, 500, malformed, broken stream, slow).

It is a fault fixture, not a model: it echoes the last user message, and answers routing requests
(`response_format` set) with an empty JSON decision.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Mode = Literal["ok", "error500", "malformed", "malformed_stream", "broken_stream", "slow"]


@dataclass
class FaultyServer:
    mode: Mode = "ok"
    script: list[Mode] = field(default_factory=list)  # modes for the next requests, then `mode`
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        self.bodies.append(body)
        mode = self.script.pop(0) if self.script else self.mode
        if mode == "error500":
            return web.json_response({"error": {"message": "CUDA out of memory", "type": "server_error"}}, status=500)
        if mode == "malformed":
            return web.Response(text="{not json", content_type="application/json")
        if mode == "slow":
            await asyncio.sleep(30)
        if body.get("response_format"):
            text = json.dumps({"tasks": []})
        else:
            last = next((m for m in reversed(body["messages"]) if m["role"] == "user"), {"content": ""})
            content = last["content"] if isinstance(last["content"], str) else json.dumps(last["content"])
            text = f"echo: {content}"
        if not body.get("stream"):
            return web.json_response(completion(text))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        for index, word in enumerate(words):
            if mode == "broken_stream" and index == 3:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-answer
                return response
            if mode == "malformed_stream" and index == 2:
                await response.write(b"data: {broken json\n\n")
                continue
            piece = word if index == 0 else " " + word
            await response.write(f"data: {json.dumps(chunk(piece))}\n\n".encode())
            await asyncio.sleep(0.002)
        await response.write(f"data: {json.dumps(chunk('', finish=True))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


def completion(text: str) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "fixture",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def chunk(piece: str, finish: bool = False) -> dict[str, Any]:
    delta = {} if finish else {"role": "assistant", "content": piece}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fixture",
            "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if finish else None}]}


@asynccontextmanager
async def faulty_server(mode: Mode = "ok") -> AsyncIterator[FaultyServer]:
    server = FaultyServer(mode=mode)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()
