"""Long-term memory on the answer's path: recall latency per backend and mode, and remember's cost.

For each backend (SQLite file; the machine's PostgreSQL, no pgvector; pgserver's PostgreSQL with
pgvector) and recall mode (index / scan / keyword), one user gets N memories (N = 20 and 500, the
default `max_per_user`), then `recall(user, query, k=4)` is timed Q times with varied queries; also
`remember` of one new fact (dedupe included). The embedder is the local all-MiniLM-L6-v2 on CPU; its
cost alone (one query) is reported beside, since recall pays it once per turn in index and scan mode.

Run: `.venv/bin/python -m benchmarks.memory_recall` (`--sizes 20 500 --queries 50`; `--backends`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from benchmarks.common import STARTED, summary, table, wait_for_quiet, write_results
from core.embeddings import Embedder
from core.local_embeddings import LocalEmbedder
from core.settings import MemorySettings, Settings
from memory.factory import open_memory_service

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"
TOPICS = ["tea", "chess", "Rust", "Lisbon", "jazz", "cycling", "Python", "cats", "law", "cello", "figs"]
QUERIES = [
    "what should I drink?",
    "which programming language do I use?",
    "where do I live?",
    "what music do I like?",
    "what is my pet called?",
    "what editor do I prefer?",
]


def facts(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"The user mentioned fact {i} about {TOPICS[i % len(TOPICS)]} and item {i * 37 % 101}.")
    return out


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


async def run_case(
    url: str, vector: str, size: int, queries: int, embedder: Embedder, data: Path
) -> dict[str, Any]:
    memory = MemorySettings(url=SecretStr(url), vector=vector, max_per_user=size + 10)
    settings = Settings(data_dir=data, memory=memory, _env_file=None)
    service = await open_memory_service(settings, embedder=embedder)
    assert service is not None
    try:
        user = f"bench-{uuid.uuid4().hex[:8]}"
        for start in range(0, size, 50):  # batches of remember(), as extraction would add them over time
            await service.remember(user, facts(size)[start : start + 50])
        recall_ms = []
        for i in range(queries):
            began = time.perf_counter()
            await service.recall(user, QUERIES[i % len(QUERIES)], k=4)
            recall_ms.append((time.perf_counter() - began) * 1000)
        remember_ms = []
        for i in range(max(5, queries // 5)):
            began = time.perf_counter()
            await service.remember(user, [f"The user once visited a town called Bench{i}ville."])
            remember_ms.append((time.perf_counter() - began) * 1000)
        return {"mode": service.mode, "recall_ms": summary(recall_ms), "remember_ms": summary(remember_ms)}
    finally:
        await service.aclose()


async def main_async(args: argparse.Namespace, work: Path) -> None:
    if args.max_load > 0:
        wait_for_quiet(args.max_load)
    embedder = await LocalEmbedder.load()
    embed_ms = []
    for i in range(args.queries):
        began = time.perf_counter()
        await embedder.embed([QUERIES[i % len(QUERIES)]])
        embed_ms.append((time.perf_counter() - began) * 1000)
    results: list[dict[str, Any]] = []
    servers: list[Any] = []
    try:
        for backend in args.backends:
            if backend == "sqlite":
                can_index = hasattr(sqlite3.Connection, "enable_load_extension")
                modes = ["scan", "off"] + (["index"] if can_index else [])
                base = None
            elif backend == "postgres":
                modes, base = ["scan", "off"], LOCAL_PG
            else:
                import pgserver

                server = pgserver.get_server(work / "pg", cleanup_mode="stop")
                servers.append(server)
                modes, base = ["index"], server.get_uri()
            for vector in modes:
                for size in args.sizes:
                    schema = f"ens_membench_{uuid.uuid4().hex[:10]}"
                    if base is None:
                        url = f"sqlite:///{work / f'{schema}.sqlite'}"
                    else:
                        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
                            await conn.execute(f'CREATE SCHEMA "{schema}"')
                        url = with_search_path(base, schema)
                    try:
                        case = await run_case(url, vector, size, args.queries, embedder, work)
                    finally:
                        if base is not None:
                            async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
                                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                    results.append({"backend": backend, "memories": size, **case})
                    p50 = case["recall_ms"]["p50"]
                    print(backend, case["mode"], size, f"recall p50 {p50:.1f} ms", flush=True)
    finally:
        for server in servers:
            server.cleanup()
    rows = [
        [r["backend"], r["mode"], r["memories"], r["recall_ms"]["p50"], r["recall_ms"]["p99"],
         r["remember_ms"]["p50"], r["remember_ms"]["p99"]]
        for r in results
    ]
    print(f"\nquery embedding alone (all-MiniLM-L6-v2, CPU): p50 {summary(embed_ms)['p50']:.1f} ms, "
          f"p99 {summary(embed_ms)['p99']:.1f} ms")
    print(table(["backend", "mode", "memories", "recall p50 ms", "recall p99 ms", "remember p50 ms",
                 "remember p99 ms"], rows))
    path = write_results("memory_recall", {
        "started": STARTED[0], "loadavg_at_start": STARTED[1], "queries": args.queries,
        "embed_query_ms": summary(embed_ms), "cases": results,
    })
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 500])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for this load average; 0: do not")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres", "pgvector"],
                        choices=["sqlite", "postgres", "pgvector"])
    work = Path(tempfile.mkdtemp(prefix="ensemble-membench-"))
    work.chmod(0o755)  # pgserver's server runs as its own user and must enter this folder
    try:
        asyncio.run(main_async(parser.parse_args(), work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
