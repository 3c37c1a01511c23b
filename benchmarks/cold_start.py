"""App cold start: process spawn to ready (`/readyz` answers 200), then the first turn, model servers up.

Each round spawns `chainlit run chainlit_app/app.py` (what `ensemble up --no-local-llm` runs) against
the already running fixture, polls `/readyz` every 10 ms, then connects one socket.io session and
times its first turn (added TTFT over the fixture's, and the whole turn). The minimal Chainlit app is
timed the same way (ready = `/` answers 200) as the floor of Chainlit itself. `--importtime` also
writes the slowest imports of one Ensemble start (python -X importtime) to benchmarks/results/.

Run: `.venv/bin/python -m benchmarks.cold_start` (`--rounds 3`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.chainlit_client import ChainlitSession
from benchmarks.chainlit_load import PROMPT, ensemble_env, login_for
from benchmarks.common import PYTHON, REPO, RESULTS, child, fixture, free_port, table, wait_http, write_results


async def one_start(system: str, fixture_url: str, ttft: float, importtime: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ensemble-cold-") as tmp:
        if system == "ensemble":
            app, env, ready = REPO / "chainlit_app" / "app.py", ensemble_env(fixture_url, Path(tmp)), "/readyz"
        else:
            app, env, ready = REPO / "benchmarks" / "minimal_chainlit_app.py", {"BENCH_FIXTURE_URL": fixture_url}, "/"
        port = free_port()
        args = [PYTHON, *(["-X", "importtime"] if importtime else []), "-m", "chainlit", "run", str(app),
                "--headless", "--host", "127.0.0.1", "--port", str(port)]
        started = time.perf_counter()
        async with child(args, env=env, log=importtime or RESULTS / "logs" / f"{system}-cold.log") as proc:
            url = f"http://127.0.0.1:{port}"
            await wait_http(url + ready, 120, proc)
            ready_s = time.perf_counter() - started
            session = ChainlitSession(url, login_for(system, 0, "cold"))
            connect_started = time.perf_counter()
            await session.connect()
            turn = await session.turn(PROMPT.format(tag="cold"))
            first_turn_s = time.perf_counter() - connect_started
            await session.close()
    return {
        "system": system,
        "ready_s": ready_s,
        "first_turn_added_ttft_ms": ((turn.ttft or float("nan")) - ttft) * 1000,
        "first_turn_total_s": first_turn_s,
    }


def slowest_imports(log: Path, top: int = 25) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of the slowest top-level imports in a -X importtime log."""
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 2:  # top-level and first-level imports
            rows.append((match.group(3), int(match.group(1)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    async with fixture(ttft=args.ttft, tokens=40, token_delay=args.token_delay) as fx:
        for round_ in range(1, args.rounds + 1):
            for system in args.systems:
                result = await one_start(system, fx, args.ttft)
                result["round"] = round_
                runs.append(result)
                print(f"round {round_} {system}: ready {result['ready_s']:.2f} s, first turn "
                      f"{result['first_turn_total_s']:.2f} s", flush=True)
        imports: list[tuple[str, float]] = []
        if args.importtime:
            log = RESULTS / "logs" / "ensemble-importtime.log"
            await one_start("ensemble", fx, args.ttft, importtime=log)
            imports = slowest_imports(log)
    summary = []
    for system in args.systems:
        rows = [r for r in runs if r["system"] == system]
        summary.append({"system": system, **{k: statistics.median(r[k] for r in rows)
                                             for k in ("ready_s", "first_turn_added_ttft_ms", "first_turn_total_s")}})
    return {"config": vars(args), "runs": runs, "summary": summary, "slowest_imports_s": imports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--systems", nargs="+", default=["minimal", "ensemble"])
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--name", default="cold_start")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    rows = [[s["system"], s["ready_s"], s["first_turn_added_ttft_ms"], s["first_turn_total_s"]]
            for s in results["summary"]]
    print(table(["system", "spawn to ready s", "first turn added TTFT ms", "connect + first turn s"], rows))
    for module, seconds in results["slowest_imports_s"][:12]:
        print(f"  import {module}: {seconds:.2f} s")
    print("target: ready <= 3 s (model servers already up); median of rounds")
    print("results:", write_results(args.name, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
