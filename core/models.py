"""The one factory that turns settings into model clients.

Every OpenAI-compatible server (TabbyAPI, SGLang, vLLM, llama.cpp, OpenAI) is reached through
`langchain_openai.ChatOpenAI`; nothing else in Ensemble constructs a chat model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from core.local_llm import LocalLLMServer
from core.resilience import CircuitBreaker
from core.settings import ChatEndpoint, Settings

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
class ModelRole:
    """A chat model that a part of Ensemble needs, by the name it is configured under (ENSEMBLE_<NAME>__...)."""

    name: str
    # Whether the embedded local model may serve this role while it is not configured (it reads text only).
    embedded: bool = True

    def __post_init__(self) -> None:
        if not (self.name.isidentifier() and self.name.islower()) or self.name in Settings.model_fields:
            raise ValueError(f"model role {self.name!r}: a lower-case name that is not already a setting")


SUPERVISOR = ModelRole("supervisor")


@dataclass(frozen=True)
class ModelClient:
    """A chat client with the endpoint it was built from (for prompts, timeouts and messages)."""

    role: str
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
    """The chat clients of this deployment by role; a role that is switched off has none."""

    by_role: Mapping[str, ModelClient] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls, settings: Settings, roles: Iterable[ModelRole] = (SUPERVISOR,), http: httpx.AsyncClient | None = None
    ) -> ModelClients:
        """One client per role that has a server; roles served by the same server share its circuit breaker."""
        breakers: dict[str, CircuitBreaker] = {}
        clients: dict[str, ModelClient] = {}
        for role in roles:
            endpoint = settings.chat_endpoint(role.name, embedded=role.embedded)
            if endpoint is None or role.name in clients:
                continue
            key = endpoint.base_url or ""
            breaker = breakers.setdefault(key, CircuitBreaker(f"The model server at {key}"))
            llm = chat_model(endpoint, breaker=breaker, http=http)
            clients[role.name] = ModelClient(role.name, endpoint, llm, breaker)
        return cls(clients)

    def get(self, role: ModelRole | str) -> ModelClient | None:
        return self.by_role.get(role.name if isinstance(role, ModelRole) else role)

    @property
    def supervisor(self) -> ModelClient | None:
        return self.get(SUPERVISOR)

    def health(self) -> dict[str, str]:
        """Each configured role: its server's circuit state (closed = healthy)."""
        return {role: client.breaker.state if client.breaker else "unknown" for role, client in self.by_role.items()}


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
