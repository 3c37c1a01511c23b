"""A turn's server CPU by layer, from py-spy's samples of the load benchmark's servers.

`python -m benchmarks.chainlit_load --py-spy ...` records each server with py-spy (`--format raw`:
one line per distinct stack, `frame;frame;... count`; py-spy samples only threads that run, so idle
time is not in it). This sorts every sample of the event loop's thread into one layer (rules below).
Multiplied by the measured
event-loop (main thread) CPU per turn, the shares give milliseconds per turn.

Run: `.venv/bin/python -m benchmarks.turn_profile benchmarks/results/py-spy-ensemble-10.txt
--cpu-ms-per-turn 71`  (several files: one column each).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from benchmarks.common import table

# (layer, pattern on a frame's "function (file:line)"; py-spy names files from their package
# directory, so LangGraph's appear as `pregel/...`, `channels/...`, `sqlite/aio.py`). A sample goes to
# the layer of its innermost frame that matches a rule (for one frame, the first rule that matches):
# work a layer causes deeper down counts where it is spent (a socket.io emit under the token batcher is
# socket.io; the OpenAI SDK's parse under LangChain is the SDK's). The event loop, the HTTP server
# stack and aiosqlite's hand-off to its thread are plumbing that many layers pass through: a sample
# goes there only when no other rule matches any of its frames.
LAYERS: tuple[tuple[str, str], ...] = (
    ("socket.io/websocket: emits and receives", r"socketio/|engineio/|websockets/|uvicorn/protocols/websockets"),
    ("Chainlit data layer (SQLAlchemy)", r"chainlit/data/|chainlit_app/persistence\.py|sqlalchemy/"),
    (
        "memory recall (store, embedding)",
        r"\(memory/|store/(sqlite|postgres|base)/|core/local_embeddings\.py"
        r"|onnxruntime",
    ),
    ("LangGraph checkpoint (load, serialise, save)", r"\((sqlite|postgres)/aio\.py|checkpoint/|serde/|ormsgpack"),
    ("OpenAI SDK + httpx (HTTP, SSE parse, models)", r"openai/|httpx/|httpcore/|anyio/|h11/"),
    (
        "LangChain (chunks, callbacks, messages)",
        r"langchain_core/|langchain_openai/|core/models\.py"
        r"|core/resilience\.py",
    ),
    ("routing (supervisor decision, registry)", r"agents/supervisor/decision\.py|agents/specialists/registry\.py"),
    ("LangGraph runtime (Pregel, channels, stream)", r"langgraph/|\((pregel|channels|graph|_internal|managed)/"),
    ("token batching (chainlit_app/streaming.py)", r"chainlit_app/streaming\.py"),
    ("Ensemble turn (graph nodes, events, UI glue, metrics)", r"agents/|chainlit_app/(?!serve\.py)|accounts/"),
    ("Chainlit (messages, steps, session, context)", r"\(chainlit/(?!cli/|__main__)"),
)
PLUMBING: tuple[tuple[str, str], ...] = (
    ("HTTP server (uvicorn, starlette, fastapi)", r"uvicorn/|starlette/|fastapi/"),
    (
        "event loop (asyncio, nest_asyncio, aiosqlite hand-off)",
        r"asyncio/|nest_asyncio|aiosqlite/|selectors\.py|chainlit/cli/|chainlit_app/serve\.py",
    ),
)
OTHER = "other"
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in LAYERS)
_PLUMBING = tuple((name, re.compile(pattern)) for name, pattern in PLUMBING)


def layer_of(stack: str) -> str:
    frames = stack.split(";")
    for rules in (_COMPILED, _PLUMBING):
        for frame in reversed(frames):
            for name, pattern in rules:
                if pattern.search(frame):
                    return name
    return OTHER


def layers(path: Path) -> Counter[str]:
    """Samples per layer, of the main thread (the event loop) only.

    Worker threads (aiosqlite's, gRPC's) are left out: py-spy counts a thread blocked in SQLite's
    I/O or a C-level queue wait as running, so their samples are not CPU. Their real CPU is what
    `chainlit_load` reports as server CPU minus event-loop CPU (per-thread times from the kernel).
    """
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and "_bootstrap (threading" not in stack.split(";", 1)[0]:
            counts[layer_of(stack)] += int(count)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--cpu-ms-per-turn",
        type=float,
        nargs="*",
        default=[],
        help="the measured event-loop (main thread) CPU per turn of each file (adds ms/turn columns)",
    )
    args = parser.parse_args(argv)
    per_file = [layers(p) for p in args.files]
    names = [name for name, _ in (*LAYERS, *PLUMBING)] + [OTHER]
    headers = ["layer"]
    for i, path in enumerate(args.files):
        headers.append(f"{path.stem} %")
        if i < len(args.cpu_ms_per_turn):
            headers.append(f"{path.stem} ms/turn")
    rows = []
    for name in names:
        if not any(c[name] for c in per_file):
            continue
        row: list[object] = [name]
        for i, counts in enumerate(per_file):
            share = counts[name] / max(1, sum(counts.values()))
            row.append(round(100 * share, 1))
            if i < len(args.cpu_ms_per_turn):
                row.append(round(share * args.cpu_ms_per_turn[i], 1))
        rows.append(row)
    total: list[object] = ["samples"]
    for i, counts in enumerate(per_file):
        total.append(sum(counts.values()))
        if i < len(args.cpu_ms_per_turn):
            total.append(args.cpu_ms_per_turn[i])
    print(table(headers, [*rows, total]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
