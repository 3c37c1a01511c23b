"""Added time to first token and streaming through the real Chainlit server, at 1, 10 and 50 sessions.

Systems, each behind the same fixture (TTFT 200 ms, 40 tokens at 20 ms by default) and measured in
the same run, rounds interleaved: the floor (a client straight to the fixture), a minimal Chainlit app
(benchmarks/minimal_chainlit_app.py) and Ensemble (chainlit_app/app.py, supervisor in `tools` mode, so
a direct answer streams from the routing call). Sessions are socket.io clients in this process; the
servers run in their own processes. Added TTFT = first answer token minus the fixture's TTFT; the last
token's lag = last token minus the fixture's last token time; wire/text = TCP bytes received per turn
(the kernel's count, permessage-deflate offered as browsers offer it) over the answer text's UTF-8
bytes; frames/text = the same with the socket.io frames as sent, uncompressed (what a client that
offers no compression receives). Loopback only; every loop is bounded by turns and timeouts.

Run: `.venv/bin/python -m benchmarks.chainlit_load` (`--rounds 3 --turns 10 --sessions 1 10 50`;
`--tokens 100 --token-delay 0.005` for the fast-token case; `--sessions 200 --pace 10 --turns 6` for 200
people each sending a turn every 10 s; `--no-compress` for clients that offer no
websocket compression; `--systems ... patched --patched-app PATH`
to measure a patched copy of the app beside the real one; `--patched-root DIR` to run it from another checkout,
e.g. `git worktree add /tmp/base <commit>`, for an A/B of a change in one time window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.chainlit_client import ChainlitSession, TurnResult
from benchmarks.common import (
    PYTHON,
    REPO,
    RESULTS,
    child,
    fixture,
    fixture_reset,
    fixture_stats,
    free_port,
    percentile,
    table,
    wait_for_quiet,
    wait_http,
    write_results,
)

PROMPT = "Give me three tips for a productive morning. [tag:{tag}]"


LOGIN_HEADER = "X-Forwarded-Email"
AUTH_SECRET = "benchmark-only-secret-" + "x" * 32  # signs session tokens of throwaway benchmark servers


def login_for(system: str, index: int, tag: str) -> tuple[str, str] | None:
    """Ensemble runs with `header` auth (one user per session); the minimal app has no login."""
    return (LOGIN_HEADER, f"{tag}-{index}@bench.test") if system != "minimal" else None


def ensemble_env(fixture_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "ENSEMBLE_AUTH__MODE": "header",
        "ENSEMBLE_AUTH__HEADER_NAME": LOGIN_HEADER,
        "ENSEMBLE_AUTH__SECRET": AUTH_SECRET,
        "CHAINLIT_AUTH_SECRET": AUTH_SECRET,
        "ENSEMBLE_SUPERVISOR__BASE_URL": fixture_url,
        "ENSEMBLE_SUPERVISOR__MODEL": "fixture",
        "ENSEMBLE_SUPERVISOR__STRUCTURED_OUTPUT": "tools",
        "ENSEMBLE_CODE__BASE_URL": fixture_url,
        "ENSEMBLE_CODE__MODEL": "fixture",
        "ENSEMBLE_LOCAL_LLM__ENABLED": "off",
        "ENSEMBLE_DATA_DIR": str(data_dir),
    }


def serves_ensemble(app: Path, checkout: Path) -> bool:
    """Whether `app` is the checkout's own Ensemble app and the checkout has its launcher."""
    return (checkout / "chainlit_app" / "serve.py").is_file() and app.resolve() == checkout / "chainlit_app" / "app.py"


@contextlib.asynccontextmanager
async def chainlit_server(
    app: Path, env: dict[str, str], ready_path: str, log: Path, root: Path | None = None
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`chainlit run app --headless` from the repo root (Ensemble's .chainlit config), or from `root` (another
    checkout, whose code it then imports); yields its URL. Ensemble's own app runs as it is deployed, through
    `python -m chainlit_app.serve` where the checkout has it."""
    port = free_port()
    if serves_ensemble(app, root or REPO):
        args = [PYTHON, "-m", "chainlit_app.serve", "--host", "127.0.0.1", "--port", str(port)]
    else:
        args = [PYTHON, "-m", "chainlit", "run", str(app), "--headless", "--host", "127.0.0.1", "--port", str(port)]
    async with child(args, env=env, log=log, cwd=root) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + ready_path, 120, proc)
        yield url, proc


@contextlib.asynccontextmanager
async def profiled(enabled: bool, pid: int, out: Path) -> AsyncIterator[None]:
    """py-spy (sampling, collapsed stacks) on the server process while the block runs."""
    if not enabled:
        yield
        return
    args = [str(Path(PYTHON).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
            "--output", str(out), "--nonblocking"]
    async with child(args, log=RESULTS / "logs" / "py-spy.log") as spy:
        await asyncio.sleep(1.0)
        yield
        spy.send_signal(signal.SIGINT)
        await asyncio.wait_for(spy.wait(), 30)


async def chainlit_phase(
    url: str, sessions: int, turns: int, tag: str, system: str, compress: bool = True
) -> list[tuple[int, TurnResult]]:
    """`sessions` clients connect, then all run `turns` turns at once; (turn index, result) pairs."""
    clients = [ChainlitSession(url, login_for(system, i, tag), compress=compress) for i in range(sessions)]
    await asyncio.gather(*(c.connect() for c in clients))
    if compress and not all(c.compressed for c in clients):
        raise RuntimeError(f"{system}: the server refused permessage-deflate, which browsers offer")
    start = asyncio.Event()

    async def run(index: int, client: ChainlitSession) -> list[tuple[int, TurnResult]]:
        await start.wait()
        out = []
        for t in range(turns):
            marker = f"{tag}-s{index}-t{t}"
            result = await client.turn(PROMPT.format(tag=marker))
            if f"[echo:{marker}]" not in result.text:
                raise RuntimeError(f"session {index} turn {t}: answer is not this session's ({result.text[:60]!r})")
            out.append((t, result))
        return out

    tasks = [asyncio.create_task(run(i, c)) for i, c in enumerate(clients)]
    await asyncio.sleep(0.2)
    start.set()
    try:
        results = await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return [r for per in results for r in per]


async def paced_phase(
    url: str, sessions: int, turns: int, pace: float, tag: str, system: str, compress: bool = True
) -> tuple[list[tuple[int, TurnResult]], dict[str, int]]:
    """`sessions` clients each send a turn every `pace` seconds (as people type), phases spread evenly.

    Nothing raises mid-run: a turn with no `task_end` within 60 s (or a failed one) counts as lost, an
    answer carrying another session's tag as crossed. Returns the turns that completed and the counts.
    """
    clients = [ChainlitSession(url, login_for(system, i, tag), compress=compress) for i in range(sessions)]
    connecting = asyncio.Semaphore(20)  # people arrive over a few seconds, not in one instant

    async def connect(client: ChainlitSession) -> None:
        async with connecting:
            await client.connect()

    await asyncio.gather(*(connect(c) for c in clients))
    counts = {"sent": 0, "lost": 0, "crossed": 0}
    begin = time.perf_counter() + 0.5

    async def run(index: int, client: ChainlitSession) -> list[tuple[int, TurnResult]]:
        out = []
        for t in range(turns):
            due = begin + pace * (t + index / sessions)  # absolute schedule: a slow turn does not delay others
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            marker = f"{tag}-s{index}-t{t}"
            counts["sent"] += 1
            try:
                result = await client.turn(PROMPT.format(tag=marker))
            except (TimeoutError, OSError, RuntimeError):
                counts["lost"] += 1
                continue
            if f"[echo:{marker}]" not in result.text:
                counts["lost"] += 1
                counts["crossed"] += "[echo:" in result.text
                continue
            out.append((t, result))
        return out

    try:
        results = await asyncio.gather(*(run(i, c) for i, c in enumerate(clients)))
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return [r for per in results for r in per], counts


async def floor_phase(fixture_url: str, sessions: int, turns: int, tag: str) -> list[tuple[int, TurnResult]]:
    """A client straight to the fixture (streaming chat completions over HTTP): the floor."""
    limits = httpx.Limits(max_connections=sessions + 5, max_keepalive_connections=sessions + 5)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def run(index: int) -> list[tuple[int, TurnResult]]:
            out = []
            for t in range(turns):
                body = {"model": "fixture", "stream": True,
                        "messages": [{"role": "user", "content": PROMPT.format(tag=f"{tag}-s{index}-t{t}")}]}
                started = time.perf_counter()
                first = last = None
                size = tokens = 0
                async with http.stream("POST", f"{fixture_url}/chat/completions", json=body) as response:
                    async for line in response.aiter_lines():
                        size += len(line) + 1
                        if line.startswith("data: {") and '"content": "' in line and '"content": ""' not in line:
                            now = time.perf_counter() - started
                            first = now if first is None else first
                            last = now
                            tokens += 1
                out.append((t, TurnResult(first, last, time.perf_counter() - started, tokens, "", size, size)))
            return out

        results = await asyncio.gather(*(run(i) for i in range(sessions)))
    return [r for per in results for r in per]


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU of the server's main thread (its event loop); the rest is worker threads (aiosqlite, gRPC...)."""
    for thread in psutil.Process(pid).threads():
        if thread.id == pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def phase_stats(results: list[tuple[int, TurnResult]], ttft: float, stream_time: float) -> dict[str, Any]:
    added = [(r.ttft - ttft) * 1000 for _, r in results if r.ttft is not None]
    first_turns = [(r.ttft - ttft) * 1000 for t, r in results if t == 0 and r.ttft is not None]
    later = [(r.ttft - ttft) * 1000 for t, r in results if t > 0 and r.ttft is not None]
    lag = [(r.last_token - ttft - stream_time) * 1000 for _, r in results if r.last_token is not None]
    text = sum(len(r.text.encode()) for _, r in results)
    wire = sum(r.wire_bytes for _, r in results)
    frames = sum(r.frame_bytes for _, r in results)
    return {
        "turns": len(results),
        "added_ttft_p50": percentile(added, 50),
        "added_ttft_p99": percentile(added, 99),
        "first_turn_p50": percentile(first_turns, 50),
        "later_turns_p50": percentile(later, 50),
        "last_token_lag_p50": percentile(lag, 50),
        "last_token_lag_p99": percentile(lag, 99),
        "wire_bytes_per_turn": wire / max(1, len(results)),
        "text_bytes_per_turn": text / max(1, len(results)),
        "wire_over_text": wire / text if text else None,
        "frames_over_text": frames / text if text else None,
        "tokens_per_turn": statistics.fmean([r.tokens for _, r in results]) if results else 0,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / "logs"
    stream_time = (args.tokens - 1) * args.token_delay
    phases: list[dict[str, Any]] = []
    async with fixture(ttft=args.ttft, tokens=args.tokens, token_delay=args.token_delay,
                       log=logs / "fixture.log") as fixture_url, httpx.AsyncClient() as http:
        with tempfile.TemporaryDirectory(prefix="ensemble-load-") as tmp:
            servers: dict[str, tuple[str, asyncio.subprocess.Process]] = {}
            async with contextlib.AsyncExitStack() as stack:
                if "minimal" in args.systems:
                    servers["minimal"] = await stack.enter_async_context(chainlit_server(
                        REPO / "benchmarks" / "minimal_chainlit_app.py", {"BENCH_FIXTURE_URL": fixture_url}, "/",
                        logs / "minimal.log"))
                if "ensemble" in args.systems:
                    servers["ensemble"] = await stack.enter_async_context(chainlit_server(
                        Path(args.ensemble_app), ensemble_env(fixture_url, Path(tmp)), "/readyz",
                        logs / "ensemble.log"))
                if "patched" in args.systems:
                    root = Path(args.patched_root) if args.patched_root else None
                    servers["patched"] = await stack.enter_async_context(chainlit_server(
                        Path(args.patched_app or (root or REPO) / "chainlit_app" / "app.py"),
                        {**ensemble_env(fixture_url, Path(tmp) / "patched"),
                         **dict(e.split("=", 1) for e in args.patched_env)},
                        "/readyz",
                        logs / "patched.log", root))
                if args.wait_quiet:
                    wait_for_quiet(1.5, args.wait_quiet)
                for round_ in range(1, args.rounds + 1):
                    for sessions in args.sessions:
                        for system in args.systems:
                            await fixture_reset(fixture_url, http)
                            tag = f"{system}-r{round_}-n{sessions}"
                            rss_before = None
                            cpu_before = loop_cpu_before = 0.0
                            counts: dict[str, int] = {}
                            started = time.perf_counter()
                            if system == "floor":
                                results = await floor_phase(fixture_url, sessions, args.turns, tag)
                            else:
                                url, proc = servers[system]
                                rss_before = psutil.Process(proc.pid).memory_info().rss
                                cpu_before = cpu_seconds(proc.pid)
                                loop_cpu_before = main_thread_cpu_seconds(proc.pid)
                                async with profiled(args.py_spy and round_ == args.rounds, proc.pid,
                                                    RESULTS / f"py-spy-{system}-{sessions}.txt"):
                                    if args.pace:
                                        results, counts = await paced_phase(
                                            url, sessions, args.turns, args.pace, tag, system,
                                            compress=not args.no_compress)
                                    else:
                                        results = await chainlit_phase(url, sessions, args.turns, tag, system,
                                                                       compress=not args.no_compress)
                            seconds = time.perf_counter() - started
                            calls = (await fixture_stats(fixture_url, http))["calls"]
                            stats = phase_stats(results, args.ttft, stream_time)
                            stats.update(system=system, sessions=sessions, round=round_, seconds=seconds,
                                         model_calls_per_turn=calls / max(1, len(results)),
                                         loadavg_after=os.getloadavg())
                            if counts:
                                turn_seconds = [r.total * 1000 for _, r in results]
                                stats.update(pace_seconds=args.pace, turns_sent=counts["sent"],
                                             turns_lost=counts["lost"], turns_crossed=counts["crossed"],
                                             turn_ms_p50=percentile(turn_seconds, 50),
                                             turn_ms_p99=percentile(turn_seconds, 99))
                            if rss_before is not None:
                                _, proc = servers[system]
                                stats["rss_before_mb"] = rss_before / 2**20
                                stats["rss_after_mb"] = psutil.Process(proc.pid).memory_info().rss / 2**20
                                stats["server_cpu_ms_per_turn"] = (cpu_seconds(proc.pid) - cpu_before) * 1000 / len(
                                    results)
                                stats["loop_cpu_ms_per_turn"] = (
                                    main_thread_cpu_seconds(proc.pid) - loop_cpu_before) * 1000 / len(results)
                            phases.append(stats)
                            print(f"round {round_} {system:8} {sessions:3} sessions: added TTFT p50 "
                                  f"{stats['added_ttft_p50']:.1f} p99 {stats['added_ttft_p99']:.1f} ms, last-token lag "
                                  f"p50 {stats['last_token_lag_p50']:.1f} ms, wire/text "
                                  f"{stats['wire_over_text'] or 0:.1f} (frames "
                                  f"{stats['frames_over_text'] or 0:.1f}), server CPU/turn "
                                  f"{stats.get('server_cpu_ms_per_turn', 0):.1f} ms (event loop "
                                  f"{stats.get('loop_cpu_ms_per_turn', 0):.1f}); load "
                                  f"{os.getloadavg()[0]:.1f}", flush=True)
                            if counts:
                                print(f"  paced 1 turn / {args.pace:g} s: {counts['sent']} sent, {counts['lost']} "
                                      f"lost, {counts['crossed']} crossed; turn p50 {stats['turn_ms_p50']:.0f} "
                                      f"p99 {stats['turn_ms_p99']:.0f} ms", flush=True)
    return {"config": vars(args), "phases": phases, "summary": summarise(phases)}


def summarise(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over rounds of each figure, per system and number of sessions."""
    keys = ("added_ttft_p50", "added_ttft_p99", "first_turn_p50", "later_turns_p50", "last_token_lag_p50",
            "last_token_lag_p99", "wire_over_text", "frames_over_text", "wire_bytes_per_turn", "text_bytes_per_turn",
            "model_calls_per_turn", "server_cpu_ms_per_turn", "loop_cpu_ms_per_turn", "turns_lost", "turns_crossed",
            "turn_ms_p99")
    out = []
    for system in dict.fromkeys(p["system"] for p in phases):
        for sessions in dict.fromkeys(p["sessions"] for p in phases):
            rows = [p for p in phases if p["system"] == system and p["sessions"] == sessions]
            if rows:
                out.append({"system": system, "sessions": sessions, "rounds": len(rows),
                            **{k: statistics.median([r[k] for r in rows if r.get(k) is not None] or [float("nan")])
                               for k in keys}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--systems", nargs="+", default=["floor", "minimal", "ensemble"])
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--ensemble-app", default=str(REPO / "chainlit_app" / "app.py"))
    parser.add_argument("--patched-app", help="system 'patched': a patched copy of chainlit_app/app.py")
    parser.add_argument("--patched-root", help="system 'patched': run it from this checkout (e.g. a git worktree "
                        "of the commit before a change), so that it imports that checkout's code")
    parser.add_argument("--patched-env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="system 'patched': extra environment (e.g. ENSEMBLE_MEMORY__ENABLED=false)")
    parser.add_argument("--wait-quiet", type=float, default=0, help="wait up to this many seconds for load <= 1.5")
    parser.add_argument("--pace", type=float, default=0,
                        help="each session sends a turn every PACE s (phases spread) instead of back to back; "
                             "lost and crossed turns are counted, not raised")
    parser.add_argument("--no-compress", action="store_true", help="clients offer no websocket compression")
    parser.add_argument("--py-spy", action="store_true", help="profile the servers in the last round")
    parser.add_argument("--name", default="chainlit_load")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    rows = [[s["system"], s["sessions"], s["added_ttft_p50"], s["added_ttft_p99"], s["first_turn_p50"],
             s["later_turns_p50"], s["last_token_lag_p50"], s["last_token_lag_p99"], s["wire_over_text"] or 0.0,
             s["frames_over_text"] or 0.0, s["server_cpu_ms_per_turn"], s["model_calls_per_turn"]]
            for s in results["summary"]]
    print(table(["system", "sessions", "added TTFT p50 ms", "p99 ms", "1st turn p50", "later p50",
                 "last-token lag p50", "p99", "wire/text", "frames/text", "server CPU ms/turn", "model calls/turn"],
                rows))
    print("targets at 50 sessions: added TTFT <= 30 ms p50, <= 150 ms p99; wire <= 2x text (median of rounds)")
    print("results:", write_results(args.name, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
