"""Shared pieces of the benchmarks: child servers, percentiles, the machine, tables and JSON results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PYTHON = sys.executable
STARTED = (datetime.now(UTC).isoformat(timespec="seconds"), os.getloadavg())  # when this benchmark began
LIBRARIES = ("chainlit", "langgraph", "langchain-core", "langchain-openai", "openai", "httpx", "python-socketio",
             "uvicorn", "aiohttp")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else ""
    mem = ""
    with contextlib.suppress(OSError):
        match = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
        mem = f"{int(match.group(1)) / 1024 / 1024:.1f} GiB" if match else ""
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "date": STARTED[0],
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "loadavg_at_start": STARTED[1],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "machine": machine(), **data}
    data["machine"]["loadavg_at_end"] = os.getloadavg()
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value)

    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([line, rule, *body])


async def wait_http(url: str, limit: float, proc: asyncio.subprocess.Process | None = None) -> float:
    """Poll `url` until it answers 200; returns the seconds waited. Raises on timeout or child exit."""
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return time.perf_counter() - started
            if time.perf_counter() - started > limit:
                raise TimeoutError(f"{url} did not answer 200 within {limit} s")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def child(
    args: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None, cwd: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process (a server) that is terminated, then killed, on exit; run in `cwd` (default: the repo)."""
    out: Any = subprocess.DEVNULL
    handle = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("wb")
        out = handle
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd or REPO), env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if handle is not None:
            handle.close()


@contextlib.asynccontextmanager
async def fixture(
    *, ttft: float, tokens: int, token_delay: float, decision_tokens: int = 8, log: Path | None = None
) -> AsyncIterator[str]:
    """The fixture model server in its own process; yields its base URL (`http://127.0.0.1:P/v1`)."""
    port = free_port()
    args = [PYTHON, "-m", "benchmarks.fixture_server", "--port", str(port), "--ttft", str(ttft),
            "--tokens", str(tokens), "--token-delay", str(token_delay), "--decision-tokens", str(decision_tokens)]
    async with child(args, log=log) as proc:
        await wait_http(f"http://127.0.0.1:{port}/health", 30, proc)
        yield f"http://127.0.0.1:{port}/v1"


async def fixture_stats(base_url: str, client: httpx.AsyncClient) -> dict[str, Any]:
    root = base_url.removesuffix("/v1")
    data: dict[str, Any] = (await client.get(f"{root}/stats")).json()
    return data


async def fixture_reset(base_url: str, client: httpx.AsyncClient, **timing: Any) -> None:
    root = base_url.removesuffix("/v1")
    await client.post(f"{root}/stats/reset")
    if timing:
        await client.post(f"{root}/config", json=timing)


def wait_for_quiet(max_load: float = 1.5, timeout: float = 600.0) -> float:
    """Wait (bounded) until the 1-minute load average is at most `max_load`; returns the load seen."""
    deadline = time.monotonic() + timeout
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() < deadline:
        print(f"load average {load:.2f} > {max_load}; waiting ...", flush=True)
        time.sleep(15)
        load = os.getloadavg()[0]
    return load
