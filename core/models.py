"""The one factory that turns settings into model clients.

Every OpenAI-compatible server (TabbyAPI, SGLang, vLLM, llama.cpp, OpenAI) is reached through
`langchain_openai.ChatOpenAI`; nothing else in Ensemble constructs a chat model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from core.settings import ChatEndpoint, Settings

ChatRole = Literal["supervisor", "code", "vision"]


def chat_model(endpoint: ChatEndpoint) -> ChatOpenAI:
    """A streaming chat client for `endpoint`. Retries are off: callers decide what is safe to repeat."""
    return ChatOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key if endpoint.api_key.get_secret_value() else SecretStr("none"),
        model=endpoint.model or "default",
        timeout=endpoint.timeout,
        max_retries=0,
        streaming=True,
        stream_usage=False,
        temperature=endpoint.temperature,
        max_completion_tokens=endpoint.max_tokens,
    )


@dataclass(frozen=True)
class ModelClient:
    """A chat client with the endpoint it was built from (for prompts, timeouts and messages)."""

    role: ChatRole
    endpoint: ChatEndpoint
    llm: ChatOpenAI

    @property
    def model_name(self) -> str:
        return self.endpoint.model or "default"

    @property
    def where(self) -> str:
        return f"{self.model_name} at {self.endpoint.base_url}"


@dataclass(frozen=True)
class ModelClients:
    """The chat clients of this deployment, one per role; None where the role is switched off."""

    supervisor: ModelClient | None
    code: ModelClient | None
    vision: ModelClient | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelClients:
        def build(role: ChatRole) -> ModelClient | None:
            endpoint = settings.chat_endpoint(role)
            return None if endpoint is None else ModelClient(role, endpoint, chat_model(endpoint))

        return cls(supervisor=build("supervisor"), code=build("code"), vision=build("vision"))
