"""Sessions per process and memory per session (RSS of the Chainlit server process), idle and after 20 turns.

For Ensemble and the minimal Chainlit app, each behind the fixture (fast tokens, so that turns are
cheap): warm up with one session, then open `--sessions` idle socket.io sessions in batches (RSS
after each batch), check that the process still answers with them all connected, run `--turns`
turns on `--active` of them, and finally disconnect everyone (Chainlit keeps a disconnected session
for `session_timeout`). Loopback only; bounded by the counts given.

Run: `.venv/bin/python -m benchmarks.sessions_memory` (`--sessions 500 --active 100 --turns 20`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.chainlit_client import ChainlitSession
from benchmarks.chainlit_load import PROMPT, chainlit_server, ensemble_env, login_for
from benchmarks.common import REPO, RESULTS, fixture, table, write_results

MB = 2**20


def rss(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss)


async def settle(pid: int) -> float:
    """RSS after the server has been quiet for a moment."""
    gc.collect()
    await asyncio.sleep(2.0)
    return rss(pid)


async def measure(system: str, url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"system": system}
    warm = ChainlitSession(url, login_for(system, 0, "warm"))
    await warm.connect()
    for t in range(2):
        await warm.turn(PROMPT.format(tag=f"warm-{t}"))
    await warm.close()
    base = await settle(pid)
    out["rss_warm_mb"] = base / MB
    sessions: list[ChainlitSession] = []
    curve = []
    started = time.perf_counter()
    while len(sessions) < args.sessions:
        count = min(args.batch, args.sessions - len(sessions))
        batch = [ChainlitSession(url, login_for(system, len(sessions) + i, "idle")) for i in range(count)]
        await asyncio.gather(*(s.connect() for s in batch))
        sessions.extend(batch)
        curve.append((len(sessions), rss(pid) / MB))
    out["connect_seconds"] = time.perf_counter() - started
    idle = await settle(pid)
    out["sessions_connected"] = len(sessions)
    out["rss_idle_mb"] = idle / MB
    out["idle_kib_per_session"] = (idle - base) / len(sessions) / 1024
    out["curve_mb"] = curve
    still = [x for x in sessions if x.client.connected]
    out["sessions_still_connected"] = len(still)
    probe_session = ChainlitSession(url, login_for(system, -1, "probe"))
    await probe_session.connect()
    probe = await probe_session.turn(PROMPT.format(tag="probe"))
    await probe_session.close()
    out["probe_added_ttft_ms_with_all_connected"] = ((probe.ttft or float("nan")) - args.ttft) * 1000

    active = still[: args.active]
    sem = asyncio.Semaphore(args.concurrency)

    async def chat(index: int, session: ChainlitSession) -> None:
        for t in range(args.turns):
            async with sem:
                result = await session.turn(PROMPT.format(tag=f"m{index}-{t}"))
            if f"[echo:m{index}-{t}]" not in result.text:
                raise RuntimeError(f"session {index} got someone else's answer")

    started = time.perf_counter()
    await asyncio.gather(*(chat(i, s) for i, s in enumerate(active)))
    out["turns_seconds"] = time.perf_counter() - started
    after = await settle(pid)
    out["rss_after_turns_mb"] = after / MB
    out["kib_per_active_session_after_turns"] = (after - idle) / max(1, len(active)) / 1024 + out[
        "idle_kib_per_session"]
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    out["rss_after_disconnect_mb"] = (await settle(pid)) / MB
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    logs = RESULTS / "logs"
    runs = []
    async with fixture(ttft=args.ttft, tokens=40, token_delay=args.token_delay, log=logs / "fixture-mem.log") as fx:
        for system in args.systems:
            with tempfile.TemporaryDirectory(prefix="ensemble-mem-") as tmp:
                if system == "ensemble":
                    app, env, ready = REPO / "chainlit_app" / "app.py", ensemble_env(fx, Path(tmp)), "/readyz"
                else:
                    app, env, ready = REPO / "benchmarks" / "minimal_chainlit_app.py", {"BENCH_FIXTURE_URL": fx}, "/"
                async with chainlit_server(app, env, ready, logs / f"{system}-mem.log") as (url, proc):
                    fresh = await settle(proc.pid)
                    result = await measure(system, url, proc.pid, args)
                    result["rss_fresh_mb"] = fresh / MB
                    with contextlib.suppress(psutil.Error):
                        result["open_fds"] = psutil.Process(proc.pid).num_fds()
                    runs.append(result)
                    print(f"{system}: {result['sessions_connected']} sessions, "
                          f"{result['idle_kib_per_session']:.0f} KiB per idle session", flush=True)
    return {"config": vars(args), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--ttft", type=float, default=0.01)
    parser.add_argument("--token-delay", type=float, default=0.001)
    parser.add_argument("--systems", nargs="+", default=["minimal", "ensemble"])
    parser.add_argument("--name", default="sessions_memory")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    rows = [[r["system"], f"{r['sessions_connected']} ({r['sessions_still_connected']})", r["rss_fresh_mb"],
             r["rss_warm_mb"], r["rss_idle_mb"],
             r["idle_kib_per_session"], r["rss_after_turns_mb"], r["kib_per_active_session_after_turns"],
             r["rss_after_disconnect_mb"], r["probe_added_ttft_ms_with_all_connected"]] for r in results["runs"]]
    print(table(["system", "sessions (still connected)", "RSS fresh MB", "warm MB", f"{args.sessions} idle MB",
                 "KiB/idle session",
                 f"after {args.turns} turns x {args.active} MB", "KiB/active session", "after disconnect MB",
                 "probe added TTFT ms"], rows))
    print("targets: 500 sessions per process; <= 1 MB (goal <= 100 KiB) per idle session")
    print("results:", write_results(args.name, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
