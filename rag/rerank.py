"""Optional reranking of retrieved passages by a cross-encoder behind TEI's `/rerank`."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from core.settings import Endpoint
from rag.embeddings import EmbeddingError, JsonModelServer


class TEIReranker(JsonModelServer):
    """Scores (query, passage) pairs with TEI `/rerank`; returns passage indexes, best first."""

    def __init__(self, http: httpx.AsyncClient, endpoint: Endpoint, *, backoff: float = 0.5) -> None:
        super().__init__(http, endpoint, f"the reranker (TEI at {endpoint.base_url})", backoff=backoff)

    async def rerank(self, query: str, texts: Sequence[str]) -> list[tuple[int, float]]:
        if not texts:
            return []
        body = {"query": query, "texts": list(texts), "truncate": True, "raw_scores": False, "return_text": False}
        payload = await self._post("/rerank", body)
        try:
            ranks = [(int(row["index"]), float(row["score"])) for row in payload]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.what} sent a reply of an unexpected shape.") from exc
        if any(not 0 <= index < len(texts) for index, _ in ranks):
            raise EmbeddingError(f"{self.what} ranked passages that were not sent.")
        return sorted(ranks, key=lambda pair: pair[1], reverse=True)
