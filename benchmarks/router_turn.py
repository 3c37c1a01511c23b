"""Time to the first answer token per router mode, with a real supervisor's timetable (the fixture server).

The supervisor and the specialists' models are the fixture (benchmarks/fixture_server.py) with 300 ms to
the first token and 40 tokens/s; a JSON decision costs one token per 4 characters of what the model
writes (so a decision that restates the request costs what it would). The real graph runs the turn:
router cascade (facts, the fast classifier on the local all-MiniLM-L6-v2, the model), the specialists,
the answer. Three turns:

- direct: a general-knowledge question the supervisor answers itself;
- one specialist: a code request, forwarded to the code specialist;
- two specialists: an attached image and a code request (vision + code), then the synthesis.

Each turn text carries `delegate to <name>` for the fixture's decision (what a good model would decide),
and a tag that differs per run (no run reuses another's embedding).
Measured: wall time from the turn's start to its first answer token (AnswerToken), the model calls of the
turn, the stage that decided and the specialists chosen; plus the router's own CPU time (process CPU
seconds of the routing stage are not separable from the event loop, so wall ms of the `Decided` event).

Run: `.venv/bin/python -m benchmarks.router_turn` (`--turns 5`); results in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from agents.runtime import Ensemble
from agents.specialists.base import FileRef
from agents.supervisor.events import AnswerToken, Decided, TurnFailed, TurnFinished
from benchmarks.common import fixture, fixture_reset, fixture_stats, table, write_results
from core.settings import ChatEndpoint, LocalLLMSettings, MemorySettings, RouterSettings, Settings

TURNS = {
    "direct": ("What is the capital of France?", False),
    "one specialist": ("Write a Python function that reverses a string. Delegate to code.", False),
    "two specialists": (
        "Describe the shapes in this picture, then write a Python function that adds up their areas. "
        "Delegate to vision, delegate to code.",
        True,
    ),
}
MODES = ("facts", "fast", "model", "cascade")


def settings_for(base_url: str, mode: str, data_dir: Path) -> Settings:
    endpoint = ChatEndpoint(base_url=base_url, model="fixture", structured_output="json_schema")
    return Settings(
        supervisor=endpoint,
        code=ChatEndpoint(base_url=base_url, model="fixture"),
        vision=ChatEndpoint(base_url=base_url, model="fixture"),
        local_llm=LocalLLMSettings(enabled="off"),
        memory=MemorySettings(enabled=False),
        router=RouterSettings(mode=mode),  # type: ignore[arg-type]
        data_dir=data_dir,
    )


def picture(path: Path) -> FileRef:
    image = Image.new("RGB", (64, 48), (200, 220, 240))
    image.save(path, format="PNG")
    return FileRef("bench-image", path.name, str(path), "image/png", path.stat().st_size, "image")


async def one_turn(
    service: Ensemble, http: httpx.AsyncClient, base_url: str, thread: str, text: str, files: tuple[FileRef, ...]
) -> dict[str, Any]:
    before = await fixture_stats(base_url, http)
    started = time.perf_counter()
    cpu_started = time.process_time()
    cpu_decided: float | None = None
    first: float | None = None
    decided: Decided | None = None
    outcome = "none"
    async for event in service.stream_turn(thread_id=thread, user_id="bench", text=text, files=files):
        if isinstance(event, AnswerToken) and first is None:
            first = time.perf_counter() - started
        elif isinstance(event, Decided):
            decided = event
            cpu_decided = time.process_time() - cpu_started
        elif isinstance(event, TurnFinished):
            outcome = "ok" if event.content else "empty"
        elif isinstance(event, TurnFailed):
            outcome = f"failed: {event.message}"
    after = await fixture_stats(base_url, http)
    return {
        "outcome": outcome,
        "first_token_ms": None if first is None else first * 1000,
        "calls": after["calls"] - before["calls"],
        "stage": decided.chosen_by if decided else None,
        "chosen": list(decided.specialists) if decided else None,
        "routing_ms": decided.seconds * 1000 if decided else None,
        # the process's CPU time from the turn's start to its decision (routing and the graph's start)
        "cpu_to_decision_ms": None if cpu_decided is None else cpu_decided * 1000,
        "confidence": decided.confidence if decided else None,
    }


async def measure(base_url: str, http: httpx.AsyncClient, mode: str, turns: int, root: Path) -> dict[str, Any]:
    data = root / mode
    data.mkdir()
    service = await Ensemble.start(settings_for(base_url, mode, data), with_documents=False, with_memory=False)
    try:
        image = (picture(data / "shapes.png"),)
        results: dict[str, Any] = {}
        for name, (text, with_image) in TURNS.items():
            files = image if with_image else ()
            # Each run's text differs by its tag, so that no run reuses an earlier run's embedding.
            await one_turn(service, http, base_url, f"warm-{name}", f"{text} [tag:warm]", files)
            runs = [
                await one_turn(service, http, base_url, f"{name}-{i}", f"{text} [tag:run{i}]", files)
                for i in range(turns)
            ]
            firsts = [r["first_token_ms"] for r in runs if r["first_token_ms"] is not None]
            results[name] = {
                "first_token_ms_p50": statistics.median(firsts) if firsts else None,
                "calls": runs[-1]["calls"],
                "stage": runs[-1]["stage"],
                "chosen": runs[-1]["chosen"],
                "routing_ms_p50": statistics.median(r["routing_ms"] for r in runs if r["routing_ms"] is not None),
                "cpu_to_decision_ms_p50": statistics.median(
                    r["cpu_to_decision_ms"] for r in runs if r["cpu_to_decision_ms"] is not None
                ),
                "confidence": runs[-1]["confidence"],
                "outcomes": sorted({r["outcome"] for r in runs}),
                "runs": runs,
            }
        return results
    finally:
        await service.aclose()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()
    out: dict[str, Any] = {"ttft": 0.3, "tokens_per_second": 40, "turns": args.turns, "load_at_start": load}
    async with (
        fixture(ttft=0.3, tokens=args.tokens, token_delay=1 / 40, decision_tokens=0) as base_url,
        httpx.AsyncClient(timeout=60) as http,
    ):
        await fixture_reset(base_url, http)
        with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
            for mode in args.modes:
                out[mode] = await measure(base_url, http, mode, args.turns, Path(tmp))
    out["load_at_end"] = os.getloadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=40, help="answer tokens per model reply")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    rows = []
    for mode in args.modes:
        for turn, r in results[mode].items():
            rows.append(
                [
                    mode,
                    turn,
                    f"{r['first_token_ms_p50']:.0f}" if r["first_token_ms_p50"] else "-",
                    r["calls"],
                    r["stage"],
                    "+".join(r["chosen"] or []) or "direct",
                    f"{r['routing_ms_p50']:.1f}",
                    f"{r['cpu_to_decision_ms_p50']:.1f}",
                    ",".join(r["outcomes"]),
                ]
            )
    print(
        table(
            [
                "mode",
                "turn",
                "first answer token ms (p50)",
                "model calls",
                "decided by",
                "chosen",
                "routing ms (wall, p50)",
                "CPU ms to decision (p50)",
                "outcome",
            ],
            rows,
        )
    )
    print(f"load average: start {results['load_at_start']}, end {results['load_at_end']}")
    path = write_results("router_turn", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
