"""Fixtures for the specialists' tests: a real local HTTP server (aiohttp on 127.0.0.1) that plays
an upstream API's documented shapes and records every request, and OpenAI spec validators."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "torchserve: starts a real TorchServe (Java 17, PyPI torchserve) on 127.0.0.1"
    )


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeUpstream:
    """Routes set per test (`server.route("POST", "/search", handler)`); every request is recorded."""

    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def reply(self, method: str, path: str, status: int = 200, **kwargs: Any) -> None:
        """Answer `method path` with a fixed `web.json_response` (json=...) or `web.Response`."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if "json" in kwargs:
                return web.json_response(kwargs["json"], status=status)
            return web.Response(status=status, **kwargs)

        self.route(method, path, handler)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": f"no route {request.method} {request.path}"}, status=404)
        return await handler(request)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fresh local HTTP server on 127.0.0.1 and a random free port."""
    fake = FakeUpstream()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fake.dispatch)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The app's shared HTTP client, as the specialists receive it."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(scope="session")
def openai_spec(specs_dir: Path) -> dict[str, Any]:
    path = specs_dir / "openai-openapi.json"
    if not path.is_file():
        pytest.skip(f"OpenAI's OpenAPI spec not found at {path}")
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


SchemaValidator = Callable[..., Draft202012Validator]


@pytest.fixture(scope="session")
def openai_validator(openai_spec: dict[str, Any]) -> SchemaValidator:
    """`openai_validator("CreateImageRequest")`: a validator for a component schema, $refs resolved
    against the whole spec. `strict=True` also refuses properties the schema does not name."""
    uri = "urn:openai-openapi"
    registry: Registry = Registry().with_resource(uri, Resource.from_contents(openai_spec, DRAFT202012))

    def make(name: str, *, strict: bool = False) -> Draft202012Validator:
        schema: dict[str, Any] = {"$ref": f"{uri}#/components/schemas/{name}"}
        if strict:
            schema = dict(openai_spec["components"]["schemas"][name])
            schema["additionalProperties"] = False
            schema = json.loads(json.dumps(schema).replace('"#/components', f'"{uri}#/components'))
        return Draft202012Validator(schema, registry=registry)

    return make


def sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def chat_completion_stream(text: str, model: str = "test-model") -> bytes:
    """An OpenAI `chat.completion.chunk` event stream that says `text`."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1][:-1]
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [
        {**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return sse(chunks)


def chat_route(fake: FakeUpstream, text: str, path: str = "/v1/chat/completions") -> None:
    """Answer chat completions (streamed or not) with `text`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("stream"):
            return web.Response(body=chat_completion_stream(text), content_type="text/event-stream")
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": body.get("model", "m"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
            }
        )

    fake.route("POST", path, handler)
