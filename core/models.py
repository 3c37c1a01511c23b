"""The one factory that turns settings into model clients.

Every OpenAI-compatible server (TabbyAPI, SGLang, vLLM, llama.cpp, OpenAI) is reached through
`langchain_openai.ChatOpenAI`; nothing else in Ensemble constructs a chat model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import httpx
from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from core.local_llm import LocalLLMServer
from core.resilience import CircuitBreaker
from core.settings import ChatEndpoint, Settings

ChatRole = Literal["supervisor", "code", "vision"]
WIRE_READY = ("messages", "tools")  # request fields LangChain already builds as plain JSON


def _plain_json(value: Any) -> bool:
    """Whether `value` is made only of JSON's own types (what the SDK would send unchanged)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def past_the_sdk_transform(payload: dict[str, Any]) -> dict[str, Any]:
    """The same request with its plain-JSON `messages` and `tools` sent as `extra_body`.

    The OpenAI SDK walks every request against its typed-dict unions before sending it (~3 ms for
    20 messages on this machine, growing with the chat); for plain JSON that walk changes nothing.
    `extra_body` is merged in after it, over empty placeholders that keep each key's place, so the
    body sent is byte for byte the same. The caller's own `extra_body` entries win.
    """
    moved = {
        key: payload[key] for key in WIRE_READY if isinstance(payload.get(key), list) and _plain_json(payload[key])
    }
    if not moved:
        return payload
    return {**payload, **{key: [] for key in moved}, "extra_body": {**moved, **(payload.get("extra_body") or {})}}


class OpenAICompatibleChat(ChatOpenAI):
    """`ChatOpenAI` whose requests skip the SDK's client-side walk of already wire-shaped fields."""

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        return past_the_sdk_transform(payload) if "input" not in payload else payload  # not the Responses API


def chat_model(
    endpoint: ChatEndpoint, *, breaker: CircuitBreaker | None = None, http: httpx.AsyncClient | None = None
) -> ChatOpenAI:
    """A streaming chat client for `endpoint`.

    A completion is not retried once sent (it may have started generating); only a connection that
    could not be opened is retried, once, with backoff, by the HTTP transport given in `http`.
    """
    return OpenAICompatibleChat(
        callbacks=[breaker] if breaker is not None else None,
        http_async_client=http,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key if endpoint.api_key.get_secret_value() else SecretStr("none"),
        model=endpoint.model or "default",
        timeout=endpoint.timeout,
        max_retries=0,
        streaming=True,
        stream_usage=False,
        temperature=endpoint.temperature,
        max_completion_tokens=endpoint.max_tokens,
        # llama.cpp's server reads only `max_tokens`
        extra_body={"max_tokens": endpoint.max_tokens} if endpoint.max_tokens else None,
    )


@dataclass(frozen=True)
class ModelClient:
    """A chat client with the endpoint it was built from (for prompts, timeouts and messages)."""

    role: ChatRole
    endpoint: ChatEndpoint
    llm: ChatOpenAI
    breaker: CircuitBreaker | None = None

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
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient | None = None) -> ModelClients:
        """One client per role; roles served by the same server share its circuit breaker."""
        breakers: dict[str, CircuitBreaker] = {}

        def build(role: ChatRole) -> ModelClient | None:
            endpoint = settings.chat_endpoint(role)
            if endpoint is None:
                return None
            key = endpoint.base_url or ""
            breaker = breakers.setdefault(key, CircuitBreaker(f"The model server at {key}"))
            return ModelClient(role, endpoint, chat_model(endpoint, breaker=breaker, http=http), breaker)

        return cls(supervisor=build("supervisor"), code=build("code"), vision=build("vision"))

    def health(self) -> dict[str, str]:
        """Each configured role: its server's circuit state (closed = healthy)."""
        return {
            client.role: client.breaker.state if client.breaker else "unknown"
            for client in (self.supervisor, self.code, self.vision)
            if client is not None
        }


def model_http_client(local: LocalLLMServer | None = None) -> httpx.AsyncClient:
    """The HTTP client of the model clients: retries only connections that could not be opened.

    Requests to the embedded server (`local`) go through its supervisor's transport, so that a failure
    caused by its state (crashed, still starting) reaches the chat as that state, not as "unreachable".
    """
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    if local is not None:
        origin = httpx.URL(local.base_url)
        mounts[f"all://{origin.host}:{origin.port}"] = local.transport(httpx.AsyncHTTPTransport(retries=1))
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=1), mounts=mounts, timeout=None)
