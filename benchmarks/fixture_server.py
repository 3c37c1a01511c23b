"""A benchmark FIXTURE that speaks OpenAI's chat-completions protocol with known timing. Not a model.

It answers every request with words of English prose (a passage of Python's own help text, stdlib
`pydoc_data`, chosen by the request's text: different per turn like real answers, so that websocket
compression meets text it has not seen) after a fixed time to first token (`ttft`) and then one
word every `token_delay` seconds, scheduled against absolute deadlines so that timer slop does not
accumulate. Its "model time" per call is therefore known: `ttft + n * token_delay`.

Routing rule (so that the supervisor's real decision paths run): when the last user message contains
`delegate to <name>` and the request offers a tool `ask_<name>` (OpenAI tools) or names `<name>` in a
`response_format` schema, the reply is a tool call `ask_<name>(request=...)` or the JSON decision
`{"tasks": [{"specialist": "<name>"}]}` (one task per `delegate to <name>`; each task restates the
request only where the schema requires one). `--decision-tokens 0`: a decision costs one token per 4
characters of its text, as a model writing it would. Otherwise a `response_format` request gets
`{"tasks": []}` and every other request gets text. A `[tag:XYZ]` in the last user message is echoed as
the answer's first word, so load clients can check that each session receives only its own answers.

Run: `.venv/bin/python -m benchmarks.fixture_server --port 8199 --ttft 0.2 --tokens 40 --token-delay 0.02`
(prints `fixture listening on http://127.0.0.1:<port>/v1` once it accepts connections).
`GET /stats` returns call counts and served time; `POST /stats/reset` clears them; `POST /config`
changes the timing of later calls.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import sys
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

DELEGATE = re.compile(r"delegate to (\w+)", re.I)
TAG = re.compile(r"\[tag:([\w-]{1,64})\]")


@functools.cache
def corpus() -> tuple[str, ...]:
    """The words of Python's help topics (~65k words of English prose and examples)."""
    from pydoc_data.topics import topics

    return tuple(" ".join(topics[key] for key in sorted(topics)).split())


def passage(seed: str, count: int) -> list[str]:
    """`count` consecutive words of the corpus, from a place chosen by `seed`."""
    words = corpus()
    start = zlib.crc32(seed.encode()) % (len(words) - count) if count < len(words) else 0
    return [words[(start + i) % len(words)] for i in range(count)]


@dataclass
class Timing:
    """How slow the fixture pretends to be (seconds)."""

    ttft: float = 0.2
    tokens: int = 40
    token_delay: float = 0.02
    # A tool call or JSON decision takes this many token delays; 0: one per 4 characters of the decision
    # (what a real model spends writing it, e.g. a request restated in full).
    decision_tokens: int = 8

    def decision_length(self, text: str) -> int:
        return self.decision_tokens or max(1, -(-len(text) // 4))

    def model_time(self, kind: str, n: int | None = None) -> float:
        if n is None:
            n = self.tokens if kind == "text" else self.decision_tokens
        return self.ttft + n * self.token_delay


@dataclass
class Stats:
    calls: int = 0
    streamed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    nominal_seconds: float = 0.0  # sum of ttft + n * token_delay over finished calls
    served_seconds: float = 0.0  # sum of measured time from request to last byte
    text_chars: int = 0


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def offered_names(body: dict[str, Any]) -> list[str]:
    """Specialist names the request offers: `ask_<name>` tools, or the enum in a response_format schema."""
    names = [
        t["function"]["name"].removeprefix("ask_")
        for t in body.get("tools") or []
        if t.get("type") == "function" and t["function"]["name"].startswith("ask_")
    ]
    if names:
        return names
    text = json.dumps(body.get("response_format") or {})
    match = re.search(r'"enum":\s*\[([^\]]*)\]', text)
    return [json.loads(x) for x in match.group(1).split(",") if x.strip()] if match else []


def plan_reply(body: dict[str, Any], timing: Timing) -> tuple[str, Any]:
    """(kind, payload): ("tool", (name, args_json)), ("json", text) or ("text", [words])."""
    user = last_user_text(body.get("messages") or [])
    names = offered_names(body)
    targets = list(dict.fromkeys(w.lower() for w in DELEGATE.findall(user) if w.lower() in names))
    target = targets[0] if targets else None
    if body.get("tools") and target:
        return "tool", (f"ask_{target}", json.dumps({"request": user}))
    if body.get("response_format") and body["response_format"].get("type") != "text":
        # The request is restated only where the schema requires it (a model that follows its schema).
        restate = '"required": ["specialist", "request"]' in json.dumps(body["response_format"])
        tasks = [{"specialist": t, "request": user} if restate else {"specialist": t} for t in targets]
        return "json", json.dumps({"tasks": tasks})
    words = passage(user, timing.tokens)
    tag = TAG.search(user)
    if tag and words:
        words[0] = f"[echo:{tag.group(1)}]"
    return "text", [w if i == 0 else " " + w for i, w in enumerate(words)]


def split_even(text: str, parts: int) -> list[str]:
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


class Fixture:
    """The aiohttp application and its counters."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.stats = Stats()
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat),
                web.get("/v1/models", self.models),
                web.get("/stats", self.get_stats),
                web.post("/stats/reset", self.reset_stats),
                web.post("/config", self.set_config),
                web.get("/health", self.health),
            ]
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fixture", "object": "model", "owned_by": "x"}]})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({**asdict(self.stats), "timing": asdict(self.timing)})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response({"status": "ok"})

    async def set_config(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.timing = Timing(**{**asdict(self.timing), **body})
        return web.json_response(asdict(self.timing))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        body = await request.json()
        timing = self.timing
        kind, payload = plan_reply(body, timing)
        model = str(body.get("model") or "fixture")
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())
        stream = bool(body.get("stream"))
        self.stats.calls += 1
        self.stats.streamed += stream
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1

        async def until(offset: float) -> None:
            delay = t0 + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

        n = timing.tokens if kind == "text" else timing.decision_length(payload if kind == "json" else payload[1])
        if kind == "text":
            pieces: list[str] = payload
        elif kind == "json":
            pieces = split_even(payload, n)
        else:
            pieces = split_even(payload[1], n)

        if not stream:
            await until(timing.model_time(kind, n))
            message: dict[str, Any] = {"role": "assistant", "content": None}
            finish = "stop"
            if kind == "tool":
                message["tool_calls"] = [
                    {
                        "id": f"call_{uuid.uuid4().hex[:8]}",
                        "type": "function",
                        "function": {"name": payload[0], "arguments": payload[1]},
                    }
                ]
                finish = "tool_calls"
            else:
                message["content"] = "".join(pieces)
            reply = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n},
            }
            self._finish(started, timing, kind, message.get("content") or "", n)
            return web.json_response(reply)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await until(timing.ttft)
        if kind == "tool":
            call_id = f"call_{uuid.uuid4().hex[:8]}"
            head = {"index": 0, "id": call_id, "type": "function", "function": {"name": payload[0], "arguments": ""}}
            await send({"role": "assistant", "content": None, "tool_calls": [head]})
            for i, piece in enumerate(pieces):
                await until(timing.ttft + (i + 1) * timing.token_delay)
                await send({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            await send({}, "tool_calls")
        else:
            await send({"role": "assistant", "content": ""})
            for i, piece in enumerate(pieces):
                await until(timing.ttft + i * timing.token_delay)
                await send({"content": piece})
            await until(timing.model_time(kind, n))
            await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            await response.write(b"data: " + json.dumps({**chunk, "choices": [], "usage": usage}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self._finish(started, timing, kind, "".join(pieces) if kind == "text" else "", n)
        return response

    def _finish(self, started: float, timing: Timing, kind: str, text: str, n: int | None = None) -> None:
        self.stats.nominal_seconds += timing.model_time(kind, n)
        self.stats.served_seconds += time.perf_counter() - started
        self.stats.text_chars += len(text)


async def serve(host: str, port: int, timing: Timing) -> web.AppRunner:
    """Start the fixture in this event loop; returns the runner (its `addresses` hold the port)."""
    runner = web.AppRunner(Fixture(timing).app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner


async def _main(args: argparse.Namespace) -> None:
    timing = Timing(args.ttft, args.tokens, args.token_delay, args.decision_tokens)
    runner = await serve(args.host, args.port, timing)
    port = runner.addresses[0][1]
    print(f"fixture listening on http://{args.host}:{port}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--decision-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
