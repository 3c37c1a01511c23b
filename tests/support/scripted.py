"""Scripted chat models: for unit tests of routing and graph logic only (never a stand-in for a server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from core.models import ModelClient
from core.settings import ChatEndpoint, StructuredOutput


class ScriptedChatModel(BaseChatModel):
    """Replies with the scripted messages in order; records what it was asked and with which kwargs."""

    script: list[Any] = Field(default_factory=list)  # AIMessage replies, or exceptions to raise
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _should_stream(self, *, async_api: bool, run_manager: Any = None, **kwargs: Any) -> bool:
        """As the app's clients (`ChatOpenAI(streaming=True)`): every call streams unless `stream=False`."""
        return kwargs.get("stream", True) is not False

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=list(tools), **kwargs)

    def _next(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append(list(messages))
        self.call_kwargs.append(dict(kwargs))
        if not self.script:
            raise AssertionError("the scripted model ran out of replies")
        reply = self.script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        raise NotImplementedError

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = self._next(messages, kwargs)
        text = reply.text
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
        for piece in pieces:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        for index, call in enumerate(reply.tool_calls):
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(
                            name=call["name"],
                            args=json.dumps(call["args"]),
                            id=call.get("id") or f"c{index}",
                            index=index,
                        )
                    ],
                )
            )
        for index, bad in enumerate(reply.invalid_tool_calls, start=len(reply.tool_calls)):
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(
                            name=bad.get("name"), args=bad.get("args"), id=bad.get("id") or f"b{index}", index=index
                        )
                    ],
                )
            )


def tool_call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"call-{name}", "type": "tool_call"}


def scripted_client(
    model: ScriptedChatModel, structured_output: StructuredOutput = "json_object", role: str = "supervisor"
) -> ModelClient:
    endpoint = ChatEndpoint(
        base_url="http://scripted.invalid/v1", model="scripted", structured_output=structured_output
    )
    return ModelClient(role, endpoint, model)  # type: ignore[arg-type]
