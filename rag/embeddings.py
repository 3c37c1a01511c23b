"""Embedding clients: TEI's `/embed`, the OpenAI-compatible `/v1/embeddings`, and a local model.

Each knows its model name and vector dimension (recorded by the store, so that a changed model is
caught instead of silently mixing vectors). The HTTP clients batch within the server's limit and retry
on 429/503 with backoff; the local one is `core.local_embeddings.LocalEmbedder` (all-MiniLM-L6-v2 on the CPU).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from core.embeddings import Embedder
from core.errors import EnsembleError, describe_server_error
from core.local_embeddings import LOCAL_MODEL_NAME, LocalEmbedder, LocalModelUnavailable
from core.settings import EmbeddingSettings, Endpoint

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 503}
__all__ = ["LOCAL_MODEL_NAME", "Embedder", "EmbeddingError", "JsonModelServer", "LocalEmbedder", "build_embedder"]


class EmbeddingError(EnsembleError):
    """The embedding server failed; the message is for the chat user."""


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    *,
    what: str,
    timeout: float,  # noqa: ASYNC109 - a per-request HTTP timeout, passed to httpx
    headers: dict[str, str] | None = None,
    retries: int = 4,
    backoff: float = 0.5,
) -> Any:
    """POST `body` and return the JSON reply, retrying 429/503 (honouring Retry-After) and dropped links."""
    for attempt in range(retries + 1):
        try:
            response = await http.post(url, json=body, timeout=timeout, headers=headers)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if attempt == retries:
                raise EmbeddingError(
                    describe_server_error(exc, what=what, timeout=timeout) or str(exc)
                ) from exc
            await asyncio.sleep(backoff * 2**attempt)
            continue
        except httpx.TimeoutException as exc:
            raise EmbeddingError(describe_server_error(exc, what=what, timeout=timeout) or str(exc)) from exc
        if response.status_code in RETRY_STATUSES and attempt < retries:
            await asyncio.sleep(_retry_after(response) or backoff * 2**attempt)
            continue
        if response.status_code >= 400:
            error = httpx.HTTPStatusError("error", request=response.request, response=response)
            raise EmbeddingError(describe_server_error(error, what=what) or response.text) from error
        try:
            return response.json()
        except ValueError as exc:
            raise EmbeddingError(
                f"{what} sent a reply that Ensemble could not read (malformed JSON)."
            ) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 10.0)
    except ValueError:
        return None


def _vectors(payload: Any, expected: int, what: str) -> list[list[float]]:
    if (
        not isinstance(payload, list)
        or len(payload) != expected
        or not all(isinstance(v, list) and v and isinstance(v[0], int | float) for v in payload)
    ):
        raise EmbeddingError(f"{what} sent an embedding reply of an unexpected shape.")
    return [[float(x) for x in v] for v in payload]


class JsonModelServer:
    """A model server spoken to in JSON over HTTP (TEI, an OpenAI-compatible API), through `post_json`."""

    def __init__(self, http: httpx.AsyncClient, endpoint: Endpoint, what: str, *, backoff: float = 0.5) -> None:
        assert endpoint.base_url is not None
        self._http = http
        self._base = endpoint.base_url
        self._timeout = endpoint.timeout
        self._backoff = backoff
        key = endpoint.api_key.get_secret_value()
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.what = what

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return await post_json(
            self._http,
            f"{self._base}{path}",
            body,
            what=self.what,
            timeout=self._timeout,
            headers=self._headers,
            backoff=self._backoff,
        )


class _HttpEmbedder(JsonModelServer):
    """An embedding server: texts go out in batches of at most `batch_size`."""

    def __init__(self, http: httpx.AsyncClient, settings: EmbeddingSettings, what: str, *, backoff: float) -> None:
        super().__init__(http, settings, what, backoff=backoff)
        self._settings = settings
        self.model_name = settings.model
        self.dimension = 0
        self.batch_size = settings.max_batch_size

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(await self._embed_batch(list(texts[start : start + self.batch_size])))
        return out

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None  # the HTTP client is the caller's


class TEIEmbedder(_HttpEmbedder):
    """text-embeddings-inference `/embed`: batches of at most the server's `max_client_batch_size`."""

    def __init__(self, http: httpx.AsyncClient, settings: EmbeddingSettings, *, backoff: float = 0.5) -> None:
        super().__init__(http, settings, f"the embedding server (TEI at {settings.base_url})", backoff=backoff)

    async def start(self) -> TEIEmbedder:
        """Read the server's model and batch limit from `/info`, and the dimension from one probe."""
        try:
            response = await self._http.get(f"{self._base}/info", timeout=self._timeout, headers=self._headers)
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EmbeddingError(
                describe_server_error(exc, what=self.what, timeout=self._timeout)
                or f"{self.what} has no readable /info."
            ) from exc
        self.model_name = str(info.get("model_id") or self._settings.model)
        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and limit > 0:
            self.batch_size = min(self.batch_size, limit)
        self.dimension = len((await self.embed(["dimension probe"]))[0])
        return self

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        payload = await self._post("/embed", {"inputs": batch, "normalize": True, "truncate": True})
        return _vectors(payload, len(batch), self.what)


class OpenAIEmbedder(_HttpEmbedder):
    """An OpenAI-compatible `/v1/embeddings` (TEI serves one too)."""

    def __init__(self, http: httpx.AsyncClient, settings: EmbeddingSettings, *, backoff: float = 0.5) -> None:
        super().__init__(http, settings, f"the embedding server at {settings.base_url}", backoff=backoff)
        self._path = "/embeddings" if self._base.endswith("/v1") else "/v1/embeddings"

    async def start(self) -> OpenAIEmbedder:
        self.dimension = len((await self.embed(["dimension probe"]))[0])
        return self

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"input": batch, "encoding_format": "float"}
        if self._settings.model:
            body["model"] = self._settings.model
        payload = await self._post(self._path, body)
        try:
            rows = sorted(payload["data"], key=lambda row: row["index"])
            vectors = [row["embedding"] for row in rows]
        except (KeyError, TypeError) as exc:
            raise EmbeddingError(f"{self.what} sent an embedding reply of an unexpected shape.") from exc
        return [_normalise(v) for v in _vectors(vectors, len(batch), self.what)]


def _normalise(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return vector if norm == 0 else [x / norm for x in vector]


async def build_embedder(settings: EmbeddingSettings, http: httpx.AsyncClient, model_cache: Path) -> Embedder:
    """The configured embedder, started (model name and dimension known); local when none is set.

    The local model loads in the background: its first `embed` waits for it, startup does not.
    """
    if not settings.configured:
        try:
            local = LocalEmbedder(model_cache, threads=settings.local_threads, batch_size=settings.max_batch_size)
            return local.start()
        except LocalModelUnavailable as exc:
            raise EmbeddingError(str(exc)) from exc
    if settings.backend == "openai":
        return await OpenAIEmbedder(http, settings).start()
    return await TEIEmbedder(http, settings).start()
