"""Document ingestion speed: pages/s and chunks/s on a generated corpus of multi-page text PDFs.

Three runs over the same corpus, each through `rag.DocumentService` as the chat uses it:
- parse: check + parse (PDFium text layer, unstructured classification) + chunk_by_title, in the parser
  processes (1 and then 2 of them), nothing embedded;
- ingest, local embedder: the whole upload path (parse, embed with all-MiniLM-L6-v2 on the CPU, insert into
  a Milvus Lite file), the embedded default of a laptop;
- ingest, TEI: the same against a local server that speaks TEI's `/embed` and answers at once, i.e. the
  pipeline's own cost when a GPU TEI does the embedding.

Run: `.venv/bin/python -m benchmarks.ingest_bench` (`--files 3 --pages 100`). Results: printed, and
benchmarks/results/ingest_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.common import free_port, table, wait_for_quiet, write_results
from core.settings import EmbeddingSettings, RagSettings, Settings
from rag import LocalFile
from rag.embeddings import LocalEmbedder, TEIEmbedder
from rag.pool import ParserPool
from rag.runtime import configure_libraries
from rag.service import DocumentService
from rag.store import MilvusStore

VOCABULARY = (
    "harbour", "ledger", "morning", "river", "lantern", "orchard", "granite", "meadow", "copper",
    "signal", "winter", "garden", "quarry", "vessel", "timber", "canal", "beacon", "thistle",
    "mill", "market", "bridge", "weaver", "cellar", "tide", "chapel", "furnace", "council",
    "survey", "merchant", "railway", "station", "parish", "engine", "cargo", "school", "weather",
    "valley", "county", "bishop", "treaty", "colony", "surgeon", "printer", "almanac", "cathedral",
    "ferry", "tavern", "magistrate", "regiment", "archive", "census",
)
VERBS = (
    "built", "carried", "recorded", "repaired", "opened", "measured", "sold", "governed",
    "described", "crossed",
)


def sentence(rng: random.Random) -> str:
    words = rng.sample(VOCABULARY, rng.randint(6, 12))
    return (f"The {words[0]} of the {words[1]} {rng.choice(VERBS)} the {' '.join(words[2:4])} "
            f"near the {' '.join(words[4:])}.")


def make_corpus(folder: Path, files: int, pages: int) -> list[Path]:
    from fpdf import FPDF

    paths = []
    for f in range(files):
        rng = random.Random(f)
        pdf = FPDF()
        pdf.set_auto_page_break(True, 15)
        for p in range(pages):
            pdf.add_page()
            pdf.set_font("Helvetica", "B", 15)
            pdf.multi_cell(0, 9, f"Chapter {p + 1}: The {rng.choice(VOCABULARY)} {rng.choice(VOCABULARY)}",
                           new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", 11)
            for _ in range(5):  # ~450 words a page, like a dense report
                pdf.multi_cell(0, 5.5, " ".join(sentence(rng) for _ in range(rng.randint(4, 7))),
                               new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2.5)
        path = folder / f"report-{f + 1}.pdf"
        pdf.output(str(path))
        paths.append(path)
    return paths


class InstantTEI:
    """A local server with TEI's `/info` and `/embed` shapes that answers at once (384-d vectors)."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> InstantTEI:
        async def info(request: web.Request) -> web.Response:
            return web.json_response({"model_id": "instant-tei", "max_client_batch_size": 32})

        async def embed(request: web.Request) -> web.Response:
            body = await request.json()
            out = []
            for text in body["inputs"]:
                seed = hashlib.sha256(text.encode()).digest()
                rng = random.Random(seed)
                vector = [rng.uniform(-1, 1) for _ in range(384)]
                norm = sum(x * x for x in vector) ** 0.5
                out.append([x / norm for x in vector])
            return web.json_response(out)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/info", info)
        app.router.add_post("/embed", embed)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def settings_for(folder: Path, workers: int) -> Settings:
    return Settings(data_dir=folder, rag=RagSettings(parse_workers=workers, max_chunks=100_000),  # type: ignore[call-arg]
                    _env_file=None)


async def open_service(folder: Path, name: str, embedder: Any, pool: ParserPool, workers: int) -> DocumentService:
    settings = settings_for(folder, workers)
    store = await asyncio.to_thread(MilvusStore.open, str(folder / f"{name}.db"), "bench", embedder.model_name,
                                    embedder.dimension)
    return DocumentService(settings, store, embedder, pool=pool)


async def run(files: int, pages: int, wait: float = 300) -> dict[str, Any]:
    configure_libraries()
    load = wait_for_quiet(max_load=1.5, timeout=wait)
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"files": files, "pages_per_file": pages, "load_before": load}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        folder = Path(tmp)
        corpus = make_corpus(folder, files, pages)
        uploads = [LocalFile(p.name, p) for p in corpus]
        total_pages = files * pages
        embedder = await LocalEmbedder.load()

        for workers in (1, 2):
            pool = ParserPool(workers)
            await asyncio.gather(*pool.warm())
            service = await open_service(folder, f"parse{workers}", embedder, pool, workers)
            started = time.perf_counter()
            chunks = 0
            for upload in uploads:
                chunks += len((await service.parse(upload)).chunks)
            seconds = time.perf_counter() - started
            results[f"parse_{workers}"] = {"seconds": seconds, "pages": total_pages, "chunks": chunks}
            rows.append([f"parse + chunk, {workers} parser process{'es' if workers > 1 else ''}", total_pages,
                         chunks, seconds, total_pages / seconds, chunks / seconds])
            service.store.close()
            if workers == 1:
                pool.close()

        service = await open_service(folder, "local", embedder, pool, 2)
        started = time.perf_counter()
        outcome = await service.ingest(uploads, "bench-user", "bench-chat")
        seconds = time.perf_counter() - started
        chunks = sum(r.chunks for r in outcome)
        assert all(r.outcome == "ingested" for r in outcome), [r.message for r in outcome]
        results["ingest_local"] = {"seconds": seconds, "pages": total_pages, "chunks": chunks}
        rows.append(["full upload, local embedder (CPU)", total_pages, chunks, seconds, total_pages / seconds,
                     chunks / seconds])
        service.store.close()

        async with InstantTEI() as tei:
            import httpx

            async with httpx.AsyncClient() as http:
                remote = await TEIEmbedder(http, EmbeddingSettings(base_url=tei.url, max_batch_size=32)).start()
                service = await open_service(folder, "tei", remote, pool, 2)
                started = time.perf_counter()
                outcome = await service.ingest(uploads, "bench-user", "bench-chat")
                seconds = time.perf_counter() - started
                assert all(r.outcome == "ingested" for r in outcome), [r.message for r in outcome]
                chunks = sum(r.chunks for r in outcome)
                results["ingest_tei_instant"] = {"seconds": seconds, "pages": total_pages, "chunks": chunks}
                rows.append(["full upload, TEI answering at once", total_pages, chunks, seconds,
                             total_pages / seconds, chunks / seconds])
                service.store.close()
        pool.close()
        await embedder.aclose()
    results["table"] = table(["run", "pages", "chunks", "seconds", "pages/s", "chunks/s"], rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for a quiet machine")
    args = parser.parse_args()
    results = asyncio.run(run(args.files, args.pages, args.wait))
    print(results["table"])
    print(f"written: {write_results('ingest_bench', results)}")


if __name__ == "__main__":
    main()
