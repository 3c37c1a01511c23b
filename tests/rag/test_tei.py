"""The TEI clients against a local server with TEI's documented shapes; every request body they send is
validated against TEI's OpenAPI spec (tests/specs/tei-openapi.json)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from core.settings import EmbeddingSettings, Endpoint, RagSettings, Settings
from rag.embeddings import EmbeddingError, OpenAIEmbedder, TEIEmbedder
from rag.errors import EmbeddingMismatch
from rag.rerank import TEIReranker
from rag.service import start
from rag.types import LocalFile
from tests.conftest import free_port
from tests.rag.conftest import FakeTEI, fake_vector


def tei_settings(tei: FakeTEI, **kwargs: object) -> EmbeddingSettings:
    return EmbeddingSettings(base_url=tei.base_url, timeout=5, **kwargs)  # type: ignore[arg-type]


async def test_embed_batches_within_the_server_limit(fake_tei: FakeTEI) -> None:
    async with httpx.AsyncClient() as http:
        embedder = await TEIEmbedder(http, tei_settings(fake_tei, max_batch_size=32), backoff=0.01).start()
        assert (embedder.model_name, embedder.dimension, embedder.batch_size) == ("BAAI/bge-small-en-v1.5", 8, 4)
        texts = [f"passage number {n}" for n in range(10)]
        vectors = await embedder.embed(texts)
    assert vectors == [pytest.approx(fake_vector(t)) for t in texts]
    bodies = fake_tei.bodies["/embed"]
    assert [len(b["inputs"]) for b in bodies] == [1, 4, 4, 2]  # probe, then batches of at most 4
    assert all(b["truncate"] is True and b["normalize"] is True for b in bodies)
    assert fake_tei.invalid == []


async def test_embed_retries_on_429_and_503(fake_tei: FakeTEI) -> None:
    async with httpx.AsyncClient() as http:
        embedder = await TEIEmbedder(http, tei_settings(fake_tei), backoff=0.01).start()
        fake_tei.fail_next = [(429, {"Retry-After": "0"}), (503, {}), (429, {})]
        assert await embedder.embed(["one", "two"]) == [pytest.approx(fake_vector("one")),
                                                        pytest.approx(fake_vector("two"))]
        assert len(fake_tei.bodies["/embed"]) == 1 + 4
        fake_tei.fail_next = [(503, {})] * 10
        with pytest.raises(EmbeddingError, match="HTTP 503"):
            await embedder.embed(["three"])
    assert fake_tei.invalid == []


async def test_openai_compatible_route(fake_tei: FakeTEI) -> None:
    async with httpx.AsyncClient() as http:
        settings = tei_settings(fake_tei, backend="openai", model="bge-small")
        embedder = await OpenAIEmbedder(http, settings, backoff=0.01).start()
        texts = ["alpha", "beta", "gamma"]
        vectors = await embedder.embed(texts)
    assert embedder.dimension == 8
    assert vectors == [pytest.approx(fake_vector(t)) for t in texts]  # re-ordered by index, normalised
    assert fake_tei.bodies["/v1/embeddings"][-1] == {"input": texts, "encoding_format": "float", "model": "bge-small"}
    assert fake_tei.invalid == []


async def test_rerank_orders_by_score(fake_tei: FakeTEI) -> None:
    fake_tei.rerank_scores = lambda query, texts: [1.0 if "otter" in t else 0.1 for t in texts]
    async with httpx.AsyncClient() as http:
        reranker = TEIReranker(http, Endpoint(base_url=fake_tei.base_url, timeout=5), backoff=0.01)
        order = await reranker.rerank("otters", ["a heron", "an otter", "a newt"])
    assert order[0][0] == 1 and sorted(i for i, _ in order) == [0, 1, 2]
    assert fake_tei.bodies["/rerank"][0]["texts"] == ["a heron", "an otter", "a newt"]
    assert fake_tei.invalid == []


async def test_server_failures_are_readable(fake_tei: FakeTEI) -> None:
    from aiohttp import web

    async with httpx.AsyncClient() as http:
        dead = EmbeddingSettings(base_url=f"http://127.0.0.1:{free_port()}", timeout=2)
        with pytest.raises(EmbeddingError, match="Could not reach"):
            await TEIEmbedder(http, dead, backoff=0.01).start()
        embedder = await TEIEmbedder(http, tei_settings(fake_tei), backoff=0.01).start()

        async def broken(request: web.Request) -> web.Response:
            return web.Response(text="{not json", content_type="application/json")

        async def wrong_shape(request: web.Request) -> web.Response:
            return web.json_response({"embeddings": []})

        async def server_error(request: web.Request) -> web.Response:
            return web.json_response({"error": "CUDA out of memory", "error_type": "backend"}, status=500)

        for handler, message in ((broken, "malformed JSON"), (wrong_shape, "unexpected shape"),
                                 (server_error, "HTTP 500")):
            with pytest.raises(EmbeddingError, match=message):
                await _embed_via(handler, embedder)


async def _embed_via(handler: object, embedder: TEIEmbedder) -> None:
    """Run one embed against a one-route server that answers with `handler`."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/embed", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        embedder._base = f"http://127.0.0.1:{port}"
        await embedder.embed(["x"])
    finally:
        await runner.cleanup()


async def test_service_on_tei_with_reranking(fake_tei: FakeTEI, tmp_path: Path) -> None:
    """start() with TEI embeddings and TEI reranking, a real Milvus Lite file and a parser process."""
    fake_tei.rerank_scores = lambda query, texts: [2.0 if "heron" in t else 0.5 for t in texts]
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, _env_file=None,
        embeddings=EmbeddingSettings(base_url=fake_tei.base_url, timeout=5),
        rag=RagSettings(parse_workers=1, rerank=Endpoint(base_url=fake_tei.base_url, timeout=5)),
    )
    service = await start(settings, warm=False)
    try:
        assert (service.embedder.model_name, service.embedder.dimension) == ("BAAI/bge-small-en-v1.5", 8)
        files = []
        for n, text in enumerate(["The heron waits in the reeds.", "The otter dives for fish.",
                                  "The newt sleeps under a stone."]):
            path = tmp_path / f"animal{n}.txt"
            path.write_text(text)
            files.append(LocalFile(path.name, path))
        results = await service.ingest(files, "jo", "chat")
        assert [r.outcome for r in results] == ["ingested"] * 3, [r.message for r in results]
        hits = await service.search("which animal dives", "jo", "chat", k=2)
        assert hits[0].text == "The heron waits in the reeds." and hits[0].score == 2.0  # the reranker's order
        assert len(hits) == 2
        assert len(fake_tei.bodies["/rerank"][-1]["texts"]) == 3
        def reranker_down(query: str, texts: list[str]) -> list[float]:
            raise RuntimeError("reranker crashed")  # aiohttp answers 500

        fake_tei.rerank_scores = reranker_down
        hits = await service.search("which animal dives", "jo", "chat", k=2)  # reranker down: fused order
        assert len(hits) == 2
    finally:
        await service.aclose()
    assert fake_tei.invalid == []

    fake_tei.dim = 16  # the server now serves another model size: caught, not mixed
    with pytest.raises(EmbeddingMismatch, match=r"\(8-d\).*\(16-d\)"):
        await start(settings, warm=False)
