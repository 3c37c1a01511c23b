"""RSS of the embedded model server (llama.cpp on SmolLM2-135M) by context size, after a real request.

Run: `.venv/bin/python -m benchmarks.embedded_server_memory` (`--n-ctx 4096 3072 2048`). Each size starts the
server as the app does (core/local_llm.py, which waits for its self-test), sends one chat request of
~1,500 prompt tokens, and reads the server process's RSS (children included).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.common import free_port, table, write_results
from core.local_llm import LocalLLMServer
from core.settings import LocalLLMSettings

PROMPT = "Summarise the notes below in three sentences.\n\n" + " ".join(
    f"Note {i}: the ferry to the north pier leaves at nine and returns by noon." for i in range(90)
)


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in (process, *process.children(recursive=True))) / 2**20


async def measure(n_ctx: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = LocalLLMSettings(port=free_port(), n_ctx=n_ctx)
        async with LocalLLMServer(settings, Path(tmp) / "llm.log") as server, httpx.AsyncClient(timeout=300) as http:
            assert server.pid is not None
            ready = rss_mb(server.pid)
            reply = await http.post(f"{server.base_url}/chat/completions", json={
                "model": settings.model_alias, "max_tokens": 64,
                "messages": [{"role": "user", "content": PROMPT}]})
            reply.raise_for_status()
            usage = reply.json()["usage"]
            return {"n_ctx": n_ctx, "rss_ready_mb": ready, "rss_after_mb": rss_mb(server.pid),
                    "prompt_tokens": usage["prompt_tokens"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ctx", type=int, nargs="+", default=[4096, 3072, 2048])
    args = parser.parse_args(argv)
    rows = [asyncio.run(measure(n)) for n in args.n_ctx]
    print(table(["n_ctx", "RSS ready MB", "RSS after a request MB", "prompt tokens"],
                [[r["n_ctx"], r["rss_ready_mb"], r["rss_after_mb"], r["prompt_tokens"]] for r in rows]))
    print("results:", write_results("embedded_server_memory", {"rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
