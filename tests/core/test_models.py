"""The model factory's clients send exactly what `ChatOpenAI` sends, without the SDK's request walk."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from core.models import chat_model, past_the_sdk_transform
from core.settings import ChatEndpoint

TOOL = {
    "type": "function",
    "function": {
        "name": "ask_code",
        "description": "Hand a programming task to the code specialist.",
        "parameters": {"type": "object", "properties": {"request": {"type": "string"}}, "required": ["request"]},
    },
}
MESSAGES: list[BaseMessage] = [
    SystemMessage("You are Ensemble."),
    HumanMessage(
        [
            {"type": "text", "text": "What is in this picture? ünïcode"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
    ),
    AIMessage("A cat."),
    HumanMessage("And its colour?"),
]
CHUNK = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,%s}]}'
STREAM = (
    "data: " + CHUNK % '"delta":{"role":"assistant","content":"{}"},"finish_reason":null' + "\n\n"
    "data: " + CHUNK % '"delta":{},"finish_reason":"stop"' + "\n\ndata: [DONE]\n\n"
)

COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}],
}


async def _bodies(llm: ChatOpenAI, bodies: list[bytes]) -> list[bytes]:
    start = len(bodies)
    async for _ in llm.bind_tools([TOOL]).astream(MESSAGES):
        pass
    async for _ in llm.bind(response_format={"type": "json_object"}).astream(MESSAGES):
        pass
    await llm.ainvoke(MESSAGES)
    await llm.bind(response_format={"type": "json_object"}, stream=False).ainvoke(MESSAGES)  # decisions
    return bodies[start:]


async def test_requests_are_byte_identical_to_chat_openai() -> None:
    bodies: list[bytes] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if b'"stream":true' not in request.content:
            return httpx.Response(200, json=COMPLETION)
        return httpx.Response(200, text=STREAM, headers={"content-type": "text/event-stream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream)) as http:
        endpoint = ChatEndpoint(base_url="http://models.test/v1", model="m", max_tokens=64)
        ours = chat_model(endpoint, http=http)
        same: dict[str, Any] = {
            k: getattr(ours, k)
            for k in ("model_name", "temperature", "max_tokens", "streaming", "stream_usage", "extra_body")
        }
        plain = ChatOpenAI(http_async_client=http, base_url=endpoint.base_url, api_key="none", max_retries=0, **same)
        expected = await _bodies(plain, bodies)
        sent = await _bodies(ours, bodies)

    assert len(sent) == len(expected) == 4  # tools, json_object, plain (streamed); json_object whole
    assert sent == expected
    assert b'"max_tokens":64' in sent[0] and b"image_url" in sent[0] and b"ask_code" in sent[0]
    assert b'"stream":true' not in sent[3] and b"json_object" in sent[3]


def test_only_plain_json_leaves_the_sdk_walk() -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    moved = past_the_sdk_transform({**payload, "extra_body": {"max_tokens": 5}})
    assert moved["messages"] == [] and list(moved) == ["model", "messages", "stream", "extra_body"]
    assert moved["extra_body"] == {"messages": payload["messages"], "max_tokens": 5}

    odd = {"model": "m", "messages": [{"role": "user", "content": object()}]}
    assert past_the_sdk_transform(odd) is odd  # not JSON's own types: the SDK converts it as before
    mine = past_the_sdk_transform({**payload, "extra_body": {"messages": ["caller's"]}})
    assert mine["extra_body"]["messages"] == ["caller's"]  # the caller's extra_body wins


@pytest.mark.parametrize("tools", [None, "none"])
def test_nothing_moves_without_lists(tools: Any) -> None:
    payload = {"model": "m", "messages": "not a list", "tools": tools}
    assert past_the_sdk_transform(payload) is payload
