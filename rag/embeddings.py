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
from typing import Any, Protocol

import httpx

from core.errors import EnsembleError, describe_server_error
from core.local_embeddings import LOCAL_MODEL_NAME, LocalEmbedder, LocalModelUnavailable
from core.settings import EmbeddingSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 503}
__all__ = ["LOCAL_MODEL_NAME", "Embedder", "EmbeddingError", "LocalEmbedder", "build_embedder"]


class Embedder(Protocol):
    """Turns texts into unit-length vectors of `dimension` floats."""

    model_name: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


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


class TEIEmbedder:
    """text-embeddings-inference `/embed`: batches of at most the server's `max_client_batch_size`."""

    def __init__(self, http: httpx.AsyncClient, settings: EmbeddingSettings, *, backoff: float = 0.5) -> None:
        assert settings.base_url is not None
        self._http = http
        self._settings = settings
        self._base = settings.base_url
        self._backoff = backoff
        self._headers = _auth(settings)
        self.what = f"the embedding server (TEI at {self._base})"
        self.model_name = settings.model
        self.dimension = 0
        self.batch_size = settings.max_batch_size

    async def start(self) -> TEIEmbedder:
        """Read the server's model and batch limit from `/info`, and the dimension from one probe."""
        try:
            response = await self._http.get(
                f"{self._base}/info", timeout=self._settings.timeout, headers=self._headers
            )
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EmbeddingError(
                describe_server_error(exc, what=self.what, timeout=self._settings.timeout)
                or f"{self.what} has no readable /info."
            ) from exc
        self.model_name = str(info.get("model_id") or self._settings.model)
        limit = info.get("max_client_batch_size")
        if isinstance(limit, int) and limit > 0:
            self.batch_size = min(self.batch_size, limit)
        self.dimension = len((await self.embed(["dimension probe"]))[0])
        return self

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(await self._embed_batch(list(texts[start : start + self.batch_size])))
        return out

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        body = {"inputs": batch, "normalize": True, "truncate": True}
        payload = await post_json(
            self._http,
            f"{self._base}/embed",
            body,
            what=self.what,
            timeout=self._settings.timeout,
            headers=self._headers,
            backoff=self._backoff,
        )
        return _vectors(payload, len(batch), self.what)

    async def aclose(self) -> None:
        return None


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` (TEI serves one too)."""

    def __init__(self, http: httpx.AsyncClient, settings: EmbeddingSettings, *, backoff: float = 0.5) -> None:
        assert settings.base_url is not None
        self._http = http
        self._settings = settings
        base = settings.base_url
        self._url = f"{base}/embeddings" if base.endswith("/v1") else f"{base}/v1/embeddings"
        self._backoff = backoff
        self._headers = _auth(settings)
        self.what = f"the embedding server at {base}"
        self.model_name = settings.model
        self.dimension = 0
        self.batch_size = settings.max_batch_size

    async def start(self) -> OpenAIEmbedder:
        self.dimension = len((await self.embed(["dimension probe"]))[0])
        return self

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            body: dict[str, Any] = {"input": batch, "encoding_format": "float"}
            if self._settings.model:
                body["model"] = self._settings.model
            payload = await post_json(
                self._http,
                self._url,
                body,
                what=self.what,
                timeout=self._settings.timeout,
                headers=self._headers,
                backoff=self._backoff,
            )
            try:
                rows = sorted(payload["data"], key=lambda row: row["index"])
                vectors = [row["embedding"] for row in rows]
            except (KeyError, TypeError) as exc:
                raise EmbeddingError(f"{self.what} sent an embedding reply of an unexpected shape.") from exc
            out.extend(_normalise(v) for v in _vectors(vectors, len(batch), self.what))
        return out

    async def aclose(self) -> None:
        return None


def _auth(settings: EmbeddingSettings) -> dict[str, str]:
    key = settings.api_key.get_secret_value()
    return {"Authorization": f"Bearer {key}"} if key else {}


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
