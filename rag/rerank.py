"""Optional reranking of retrieved passages by a cross-encoder behind TEI's `/rerank`."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from core.settings import Endpoint
from rag.embeddings import EmbeddingError, post_json


class TEIReranker:
    """Scores (query, passage) pairs with TEI `/rerank`; returns passage indexes, best first."""

    def __init__(self, http: httpx.AsyncClient, endpoint: Endpoint, *, backoff: float = 0.5) -> None:
        assert endpoint.base_url is not None
        self._http = http
        self._endpoint = endpoint
        self._url = f"{endpoint.base_url}/rerank"
        self._backoff = backoff
        key = endpoint.api_key.get_secret_value()
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.what = f"the reranker (TEI at {endpoint.base_url})"

    async def rerank(self, query: str, texts: Sequence[str]) -> list[tuple[int, float]]:
        if not texts:
            return []
        body = {
            "query": query,
            "texts": list(texts),
            "truncate": True,
            "raw_scores": False,
            "return_text": False,
        }
        payload = await post_json(
            self._http,
            self._url,
            body,
            what=self.what,
            timeout=self._endpoint.timeout,
            headers=self._headers,
            backoff=self._backoff,
        )
        try:
            ranks = [(int(row["index"]), float(row["score"])) for row in payload]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.what} sent a reply of an unexpected shape.") from exc
        if any(not 0 <= index < len(texts) for index, _ in ranks):
            raise EmbeddingError(f"{self.what} ranked passages that were not sent.")
        return sorted(ranks, key=lambda pair: pair[1], reverse=True)
