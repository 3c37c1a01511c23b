"""Retrieval quality and speed of the documents feature.

1. Quality: recall@5 and MRR of hybrid search (dense + BM25, RRF) against dense search alone, on a small
   labelled set written here: 48 short fact sheets in four families (lighthouses, bridges, mills,
   observatories) whose members share wording and differ in names, years and details, the way a
   user's documents do, with two questions per sheet (one naming it, one only describing it). Sheets go
   through the real upload path (parse, chunk, local all-MiniLM-L6-v2 embeddings, Milvus Lite).
2. Speed: p50/p99 latency of a search in one owner's collection of 10k and 100k chunks (synthetic text
   and unit vectors: latency does not depend on their meaning), store only (query vector given) for
   hybrid and dense, and the whole `DocumentService.search` including embedding the query on the CPU.

Run: `.venv/bin/python -m benchmarks.retrieval_bench` (`--sizes 10000 100000 --queries 200`). Results:
printed, and benchmarks/results/retrieval_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import percentile, table, wait_for_quiet, write_results
from benchmarks.ingest_bench import VOCABULARY
from core.settings import RagSettings, Settings
from rag import LocalFile
from rag.embeddings import LocalEmbedder
from rag.pool import ParserPool
from rag.runtime import configure_libraries
from rag.service import DocumentService
from rag.store import MilvusStore, key_of, now, scope_filter

SYLLABLES = ("ka", "vel", "dor", "mir", "tan", "os", "rin", "bel", "quo", "sar", "eth", "lun", "gar", "pim", "zor",
             "fen", "hal", "ix", "mor", "tey")
COLOURS = ("red", "white", "green", "blue", "yellow", "grey", "black", "orange")
FAMILIES = {
    "lighthouse": (
        "The lighthouse at {place} was built in {year} by the engineer {person}. Its lamp can be seen for "
        "{n} nautical miles on a clear night, and the keeper's cottage beside it is painted {colour}. The "
        "tower was automated long ago, but visitors may still climb its spiral stair in summer.",
        ["Who built the lighthouse at {place}?", "Which lighthouse has a {colour} keeper's cottage and a lamp "
         "seen for {n} nautical miles?"],
    ),
    "bridge": (
        "The bridge over the river at {place} was opened in {year}. It was designed by {person} and has "
        "{n} stone arches; its parapet was rebuilt in {colour} sandstone after a flood. Carts paid a toll "
        "to cross it until the county bought it.",
        ["When was the bridge at {place} opened?", "Which bridge has {n} arches and a parapet of {colour} "
         "sandstone?"],
    ),
    "mill": (
        "The water mill at {place} has ground flour since {year}. Its wheel, restored by {person}, turns "
        "{n} times a minute, and the mill door is painted {colour}. The miller sells stoneground flour at "
        "the Saturday market.",
        ["Who restored the mill wheel at {place}?", "Which mill's wheel turns {n} times a minute behind a "
         "{colour} door?"],
    ),
    "observatory": (
        "The observatory at {place} opened in {year} under the astronomer {person}. Its main telescope "
        "has a mirror {n} centimetres across, housed under a {colour} dome. Public viewing nights are held "
        "every month when the sky is dark.",
        ["Who led the observatory at {place} when it opened?", "Which observatory has a {n} centimetre "
         "mirror under a {colour} dome?"],
    ),
}


def name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def labelled_set(folder: Path, per_family: int = 12) -> tuple[list[LocalFile], list[tuple[str, str]]]:
    rng = random.Random(2026)
    files: list[LocalFile] = []
    questions: list[tuple[str, str]] = []
    for family, (template, asks) in FAMILIES.items():
        for i in range(per_family):
            slots = {"place": f"{name(rng, 2)} {rng.choice(['Bay', 'Ford', 'Cross', 'Hill', 'Haven'])}",
                     "year": str(rng.randint(1700, 1950)), "person": f"{name(rng, 2)} {name(rng, 3)}",
                     "n": str(rng.randint(3, 60)), "colour": rng.choice(COLOURS)}
            file_name = f"{family}-{i + 1:02d}.txt"
            (folder / file_name).write_text(template.format(**slots))
            files.append(LocalFile(file_name, folder / file_name))
            questions.extend((ask.format(**slots), file_name) for ask in asks)
    return files, questions


def filler_text(rng: random.Random) -> str:
    return " ".join(f"The {' '.join(rng.sample(VOCABULARY, rng.randint(8, 14)))}." for _ in range(rng.randint(3, 6)))


def filler_rows(owner: str, count: int, dim: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    doc_id = uuid.uuid4().hex
    return [
        {"id": f"{doc_id}-{i:06d}", "doc_id": doc_id, "owner_key": key_of(owner), "chat_key": key_of("bench"),
         "owner": owner, "chat_id": "bench", "file_name": "filler.pdf", "page": i // 3 + 1, "page_end": i // 3 + 1,
         "section": "", "element_type": "NarrativeText", "content_hash": "", "doc_hash": "",
         "uploaded_at": now(), "chunk_index": i, "doc_pages": count // 3 + 1, "doc_chunks": count,
         "text": filler_text(rng), "dense": vectors[i].tolist()}
        for i in range(count)
    ]


async def quality(service: DocumentService, folder: Path) -> dict[str, Any]:
    files, questions = labelled_set(folder)
    results = await service.ingest(files, "quality-owner", "quality-chat")
    assert all(r.outcome == "ingested" for r in results), [r.message for r in results if r.outcome != "ingested"]
    out: dict[str, Any] = {"documents": len(files), "questions": len(questions)}
    for mode in ("dense", "hybrid"):
        found, reciprocal = 0, 0.0
        for question, relevant in questions:
            hits = await service.search(question, "quality-owner", "quality-chat", k=5, mode=mode)  # type: ignore[arg-type]
            names = [h.file_name for h in hits]
            if relevant in names:
                found += 1
                reciprocal += 1 / (names.index(relevant) + 1)
        out[mode] = {"recall@5": found / len(questions), "mrr@5": reciprocal / len(questions)}
    return out


async def latency(service: DocumentService, store: MilvusStore, size: int, queries: int,
                  embedder: LocalEmbedder) -> dict[str, Any]:
    owner = f"owner-{size}"
    started = time.perf_counter()
    for start in range(0, size, 5000):
        rows = filler_rows(owner, min(5000, size - start), store.dimension, seed=size + start)
        await asyncio.to_thread(store.insert, rows)
    insert_seconds = time.perf_counter() - started
    print(f"inserted {size} chunks in {insert_seconds:.1f} s", flush=True)
    rng = random.Random(size)
    texts = [" ".join(rng.sample(VOCABULARY, 4)) for _ in range(queries)]
    vectors = await embedder.embed(texts)
    where = scope_filter(key_of(owner))
    result: dict[str, Any] = {"chunks": size, "insert_seconds": insert_seconds}
    for _ in range(5):  # warm up: load segments, build caches
        await asyncio.to_thread(store.hybrid, where, texts[0], vectors[0], 5, 24)
    for label, call in (
        ("hybrid", lambda t, v: store.hybrid(where, t, v, 5, 24)),
        ("dense", lambda t, v: store.dense(where, v, 5)),
    ):
        times = []
        for text, vector in zip(texts, vectors, strict=True):
            t0 = time.perf_counter()
            await asyncio.to_thread(call, text, vector)
            times.append((time.perf_counter() - t0) * 1000)
        result[label] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
    times = []
    for text in texts[: max(queries // 4, 20)]:
        t0 = time.perf_counter()
        await service.search(text, owner, None, k=5)
        times.append((time.perf_counter() - t0) * 1000)
    result["service_search"] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
    return result


async def run(sizes: list[int], queries: int, wait: float = 300) -> dict[str, Any]:
    configure_libraries()
    load = wait_for_quiet(max_load=1.5, timeout=wait)
    out: dict[str, Any] = {"load_before": load}
    with tempfile.TemporaryDirectory(prefix="retrieval-bench-") as tmp:
        folder = Path(tmp)
        embedder = await LocalEmbedder.load()
        pool = ParserPool(2)
        await asyncio.gather(*pool.warm())
        settings = Settings(data_dir=folder, rag=RagSettings(), _env_file=None)  # type: ignore[call-arg]
        store = await asyncio.to_thread(MilvusStore.open, str(folder / "bench.db"), "bench", embedder.model_name,
                                        embedder.dimension)
        service = DocumentService(settings, store, embedder, pool=pool)
        out["quality"] = await quality(service, folder)
        print(f"quality: {out['quality']}", flush=True)
        out["latency"] = []
        total = 0
        for size in sorted(sizes):
            # a new owner with `size` chunks; earlier owners' chunks stay in the collection
            out["latency"].append(await latency(service, store, size, queries, embedder))
            print(f"latency: {out['latency'][-1]}", flush=True)
            total += size
        out["collection_chunks"] = total + out["quality"]["documents"]
        pool.close()
        store.close()
        await embedder.aclose()
    q = out["quality"]
    out["quality_table"] = table(
        ["search", "recall@5", "MRR@5"],
        [[mode, q[mode]["recall@5"], q[mode]["mrr@5"]] for mode in ("dense", "hybrid")],
    )
    out["latency_table"] = table(
        ["owner's chunks", "hybrid p50 ms", "hybrid p99 ms", "dense p50 ms", "dense p99 ms",
         "search incl. query embedding p50 ms", "p99 ms"],
        [[r["chunks"], r["hybrid"]["p50_ms"], r["hybrid"]["p99_ms"], r["dense"]["p50_ms"], r["dense"]["p99_ms"],
          r["service_search"]["p50_ms"], r["service_search"]["p99_ms"]] for r in out["latency"]],
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for a quiet machine")
    args = parser.parse_args()
    results = asyncio.run(run(args.sizes, args.queries, args.wait))
    print(results["quality_table"])
    print(results["latency_table"])
    print(f"written: {write_results('retrieval_bench', results)}")


if __name__ == "__main__":
    main()
