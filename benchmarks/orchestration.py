"""Per-turn orchestration overhead of the real supervisor graph (agents.runtime.Ensemble), against the fixture.

Framework time per turn = wall time of `stream_turn` minus the fixture's model time for the calls
that turn made (counted at the fixture). Also: added time to the first answer token, and model calls
per turn, for a direct answer and a delegated turn (code specialist), in the `tools` and
`json_object` decision modes, with long-term memory on (the default: recall before routing, fact
extraction in the background after the answer, waited for outside the turn's time) and off. The
checkpointer is the real default (SQLite file in a temp dir).

Run: `.venv/bin/python -m benchmarks.orchestration` (`--turns 100`, `--profile` writes a pyinstrument
report of the measured turns to benchmarks/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agents.runtime import Ensemble
from agents.supervisor.events import AnswerToken, StepToken, TurnFailed, TurnFinished
from benchmarks.common import RESULTS, fixture, fixture_reset, fixture_stats, summary, table, write_results
from core.settings import ChatEndpoint, LocalLLMSettings, MemorySettings, Settings

DIRECT = "Give me three tips for a productive morning. [tag:{tag}]"
DELEGATED = "Please delegate to code: write a Python function that reverses a string. [tag:{tag}]"
TURNS_PER_THREAD = 10


def settings_for(base_url: str, mode: str, data_dir: Path, memory: bool = True) -> Settings:
    return Settings(
        supervisor=ChatEndpoint(base_url=base_url, model="fixture", structured_output=mode),
        code=ChatEndpoint(base_url=base_url, model="fixture"),
        local_llm=LocalLLMSettings(enabled="off"),
        memory=MemorySettings(enabled=memory),
        data_dir=data_dir,
    )


async def one_turn(service: Ensemble, http: httpx.AsyncClient, base_url: str, thread: str, text: str,
                   ttft: float) -> dict[str, Any]:
    before = await fixture_stats(base_url, http)
    started = time.perf_counter()
    cpu_started = time.process_time()
    first: float | None = None
    outcome = "none"
    async for event in service.stream_turn(thread_id=thread, user_id="bench", text=text):
        if isinstance(event, AnswerToken | StepToken) and first is None:
            first = time.perf_counter() - started
        elif isinstance(event, TurnFinished):
            outcome = "ok" if event.content else "empty"
        elif isinstance(event, TurnFailed):
            outcome = f"failed: {event.message}"
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    during = await fixture_stats(base_url, http)
    idle = getattr(service, "idle", None)
    if idle is not None:  # background work after the answer (memory extraction): outside the turn's time
        await idle()
    after = await fixture_stats(base_url, http)
    calls = during["calls"] - before["calls"]
    nominal = during["nominal_seconds"] - before["nominal_seconds"]
    served = during["served_seconds"] - before["served_seconds"]
    # The answer's first token comes after every call before the answering one, plus that call's TTFT.
    decision_time = nominal - (calls and (after["timing"]["ttft"] + after["timing"]["tokens"] *
                                          after["timing"]["token_delay"]))
    return {
        "outcome": outcome,
        "calls": calls,
        "background_calls": after["calls"] - during["calls"],
        "wall_ms": wall * 1000,
        "cpu_ms": cpu * 1000,
        "framework_ms": (wall - nominal) * 1000,
        "framework_vs_served_ms": (wall - served) * 1000,
        "added_ttft_ms": None if first is None else (first - decision_time - ttft) * 1000,
    }


async def run_turns(service: Ensemble, http: httpx.AsyncClient, base_url: str, mode: str, turns: int,
                    warmup: int, ttft: float) -> dict[str, list[dict[str, Any]]]:
    """Direct and delegated turns interleaved (so that both see the same machine), after warm-up turns."""
    rows: dict[str, list[dict[str, Any]]] = {"direct": [], "delegated": []}
    for i in range(warmup + turns):
        for kind, template in (("direct", DIRECT), ("delegated", DELEGATED)):
            thread = f"{mode}-{kind}-{i // TURNS_PER_THREAD}"
            row = await one_turn(service, http, base_url, thread, template.format(tag=f"{kind}{i}"), ttft)
            if row["outcome"] != "ok":
                raise RuntimeError(f"{mode}/{kind} turn {i}: {row['outcome']}")
            if i >= warmup:
                rows[kind].append(row)
    return rows


async def measure_mode(base_url: str, http: httpx.AsyncClient, mode: str, memory: bool, args: argparse.Namespace,
                       profiler: Any) -> dict[str, Any]:
    """Direct and delegated turns through a service started for `mode` (long-term memory on or off)."""
    runs: dict[str, Any] = {}
    variant = mode + ("" if memory else "+no-memory")
    with tempfile.TemporaryDirectory(prefix="ensemble-bench-") as tmp:
        service = await Ensemble.start(settings_for(base_url, mode, Path(tmp), memory))
        try:
            await asyncio.sleep(args.settle)  # let startup's background work (model loads, Milvus Lite) finish
            await fixture_reset(base_url, http)
            if profiler is not None:
                profiler.start()
            by_kind = await run_turns(service, http, base_url, mode, args.turns, args.warmup, args.ttft)
            if profiler is not None:
                profiler.stop()
            for kind, rows in by_kind.items():
                runs[f"{variant}/{kind}"] = {
                    key: summary([r[key] for r in rows if r[key] is not None])
                    for key in ("framework_ms", "framework_vs_served_ms", "added_ttft_ms", "wall_ms", "cpu_ms")
                }
                runs[f"{variant}/{kind}"]["calls_per_turn"] = sorted({r["calls"] for r in rows})
                runs[f"{variant}/{kind}"]["background_calls_per_turn"] = sorted({r["background_calls"] for r in rows})
        finally:
            await service.aclose()
    return runs


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"config": vars(args), "runs": {}}
    profiler: Any = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled", interval=0.0005)
    async with (
        fixture(ttft=args.ttft, tokens=args.tokens, token_delay=args.token_delay) as base_url,
        httpx.AsyncClient() as http,
    ):
        for mode in args.modes:
            for memory in args.memory:
                results["runs"].update(await measure_mode(base_url, http, mode, memory == "on", args, profiler))
    if profiler is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "orchestration-profile.txt").write_text(profiler.output_text(unicode=True, show_all=False))
        (RESULTS / "orchestration-profile.html").write_text(profiler.output_html())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=100, help="measured turns per mode and kind")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after the service starts")
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-delay", type=float, default=0.005)
    parser.add_argument("--modes", nargs="+", default=["tools", "json_object"])
    parser.add_argument("--memory", nargs="+", default=["on", "off"], choices=["on", "off"],
                        help="long-term memory (recall before answering, extraction after) on and/or off")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--name", default="orchestration")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    rows = []
    for key, run in results["runs"].items():
        fw, ttft = run["framework_ms"], run["added_ttft_ms"]
        rows.append([key, fw["p50"], fw["p99"], run["framework_vs_served_ms"]["p50"], ttft["p50"], ttft["p99"],
                     run["cpu_ms"]["p50"], ",".join(map(str, run["calls_per_turn"])),
                     ",".join(map(str, run["background_calls_per_turn"])), fw["n"]])
    print(table(["mode/turn", "framework p50 ms", "p99 ms", "vs served p50", "added TTFT p50", "p99",
                 "app CPU ms/turn", "model calls", "background calls", "turns"], rows))
    print("targets: framework <= 15 ms p50, <= 40 ms p99; delegated <= direct + 2 model calls")
    print("results:", write_results(args.name, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
