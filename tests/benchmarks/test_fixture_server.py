"""The benchmark fixture speaks OpenAI's chat-completions protocol as langchain-openai's ChatOpenAI sees it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI

from benchmarks.fixture_server import Timing, serve

TIMING = Timing(ttft=0.05, tokens=6, token_delay=0.01, decision_tokens=3)
TOOL = {
    "type": "function",
    "function": {
        "name": "ask_code",
        "description": "writes code",
        "parameters": {"type": "object", "properties": {"request": {"type": "string"}}, "required": ["request"]},
    },
}


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    runner = await serve("127.0.0.1", 0, TIMING)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


def client(base_url: str, streaming: bool = True) -> ChatOpenAI:
    return ChatOpenAI(base_url=base_url, api_key="x", model="fixture", max_retries=0, streaming=streaming)  # type: ignore[arg-type]


async def test_text_streams_after_the_fixed_ttft_one_token_at_a_time(base_url: str) -> None:
    llm = client(base_url)
    await llm.ainvoke([HumanMessage("warm-up")])  # the first call builds the HTTP client and its TLS context
    started = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[str] = []
    async for chunk in llm.astream([HumanMessage("hello [tag:s1]")]):
        if chunk.text:
            arrivals.append(time.perf_counter() - started)
            chunks.append(chunk.text)
    assert len(chunks) == TIMING.tokens
    assert chunks[0] == "[echo:s1]"
    assert TIMING.ttft <= arrivals[0] < TIMING.ttft + 0.2
    assert arrivals[-1] >= TIMING.ttft + (TIMING.tokens - 1) * TIMING.token_delay
    async with httpx.AsyncClient() as http:
        stats = (await http.get(base_url.removesuffix("/v1") + "/stats")).json()
    assert stats["calls"] == 2 and stats["streamed"] == 2 and stats["by_kind"] == {"text": 2}


async def test_streamed_tool_call_is_parsed_by_chat_openai(base_url: str) -> None:
    llm = client(base_url).bind_tools([TOOL])
    merged: AIMessageChunk | None = None
    async for chunk in llm.astream([HumanMessage("please delegate to code: a parser")]):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and not merged.invalid_tool_calls
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [
        ("ask_code", {"request": "please delegate to code: a parser"})
    ]
    # without the rule's phrase, the same tools request gets a plain answer
    plain = await client(base_url).bind_tools([TOOL]).ainvoke([HumanMessage("hi")])
    assert plain.text and not plain.tool_calls


async def test_json_decision_non_streaming(base_url: str) -> None:
    schema = {"type": "object", "properties": {"tasks": {"type": "array", "items": {"type": "object", "properties": {
        "specialist": {"type": "string", "enum": ["code", "search"]}}}}}}
    fmt = {"type": "json_object", "schema": schema}
    llm = client(base_url, streaming=False).bind(response_format=fmt)
    routed = await llm.ainvoke([HumanMessage("delegate to search: news")])
    # the schema does not require a request: the fixture, like a model that follows it, writes none
    assert json.loads(routed.text) == {"tasks": [{"specialist": "search"}]}
    both = await llm.ainvoke([HumanMessage("delegate to search, then delegate to code")])
    assert json.loads(both.text) == {"tasks": [{"specialist": "search"}, {"specialist": "code"}]}
    items = schema["properties"]["tasks"]["items"]  # type: ignore[index]
    items["required"] = ["specialist", "request"]
    restating = client(base_url, streaming=False).bind(response_format={"type": "json_object", "schema": schema})
    routed = await restating.ainvoke([HumanMessage("delegate to search: news")])
    assert json.loads(routed.text) == {"tasks": [{"specialist": "search", "request": "delegate to search: news"}]}
    direct = await llm.ainvoke([HumanMessage("just chat")])
    assert json.loads(direct.text) == {"tasks": []}
