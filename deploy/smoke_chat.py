"""Send one chat turn through a running Ensemble (Chainlit) and check that an assistant reply arrives.

Run by the app chart's PostSync Job against the in-cluster Service:
    python smoke_chat.py --url http://ensemble.ensemble.svc.cluster.local:8000 --auth password
It speaks Chainlit's own protocol: log in over HTTP (password form or auth-proxy header) for the
session cookie, open the socket.io connection at /ws/socket.io, send a `client_message`, and wait
for an `assistant_message` with text, then the end of the task. Exit 0 on a reply, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio


class SmokeFailure(RuntimeError):
    """The app did not answer the chat turn as it should."""


async def login_cookie(base: str, mode: str, header: str | None) -> str:
    """The `Cookie` header carrying Chainlit's access token ('' when auth is off)."""
    if mode == "none":
        return ""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        if mode == "password":
            user, password = os.environ.get("SMOKE_USERNAME", ""), os.environ.get("SMOKE_PASSWORD", "")
            if not user or not password:
                raise SmokeFailure("SMOKE_USERNAME and SMOKE_PASSWORD must be set for --auth password")
            resp = await client.post("/login", data={"username": user, "password": password})
        else:
            name, _, value = (header or "").partition("=")
            if not name or not value:
                raise SmokeFailure("--auth header needs --header NAME=VALUE")
            resp = await client.post("/auth/header", headers={name: value})
    if resp.status_code != 200:
        raise SmokeFailure(f"login failed: HTTP {resp.status_code} {resp.text[:200]}")
    # Chainlit marks the cookie Secure; build the header ourselves for the in-cluster http:// call.
    cookies = "; ".join(f"{k}={v}" for k, v in resp.cookies.items())
    if not cookies:
        raise SmokeFailure("login answered 200 but set no session cookie")
    return cookies


async def upload(base: str, cookie: str, session_id: str, path: Path, mime: str) -> dict[str, str]:
    """Upload a file into the chat session as the browser does (`/project/file`); its file reference."""
    content = await asyncio.to_thread(path.read_bytes)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        resp = await client.post(
            "/project/file",
            params={"session_id": session_id},
            headers={"Cookie": cookie} if cookie else {},
            files={"file": (path.name, content, mime)},
        )
    if resp.status_code != 200:
        raise SmokeFailure(f"upload of {path.name} failed: HTTP {resp.status_code} {resp.text[:200]}")
    return {"id": str(resp.json()["id"])}


async def chat_turn(
    base: str,
    cookie: str,
    text: str,
    wait_seconds: float,
    files: Sequence[tuple[Path, str]] = (),
    steps: list[dict[str, Any]] | None = None,
) -> str:
    """Send `text` as a user message, with `files` ((path, MIME type)) attached; return the assistant's
    reply text. Every other step the app shows (tool steps, notices) is appended to `steps` if given."""
    sio = socketio.AsyncClient(reconnection=False)
    replies: dict[str, str] = {}
    done = asyncio.Event()
    errors: list[str] = []
    sent = asyncio.Event()

    def on_step(step: dict[str, Any]) -> None:
        if step.get("isError"):
            errors.append(str(step.get("output", "")))
        if step.get("type") == "assistant_message":
            replies[step["id"]] = str(step.get("output") or "")
        elif steps is not None and step.get("type") != "user_message":
            steps.append(step)

    sio.on("new_message", on_step)
    sio.on("update_message", on_step)

    async def on_token(data: dict[str, Any]) -> None:
        if not data.get("isSequence") and not data.get("isInput"):
            replies[data["id"]] = replies.get(data["id"], "") + str(data.get("token", ""))

    started = asyncio.Event()

    async def on_task_start(_: Any = None) -> None:
        if sent.is_set():
            started.set()

    async def on_task_end(_: Any = None) -> None:
        # connection_successful also ends a (empty) task: only the one our message started counts
        if started.is_set():
            done.set()

    sio.on("stream_token", on_token)
    sio.on("task_start", on_task_start)
    sio.on("task_end", on_task_end)

    headers = {"Cookie": cookie} if cookie else {}
    session_id = str(uuid.uuid4())
    auth = {
        "clientType": "webapp",
        "sessionId": session_id,
        "threadId": None,
        "userEnv": json.dumps({}),
        "chatProfile": None,
    }
    await sio.connect(
        base,
        socketio_path="/ws/socket.io",
        transports=["websocket"],
        headers=headers,
        auth=auth,
        wait_timeout=30,
    )
    try:
        await sio.emit("connection_successful")
        message = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat(),
        }
        references = [await upload(base, cookie, session_id, path, mime) for path, mime in files]
        sent.set()
        await sio.emit("client_message", {"message": message, "fileReferences": references})
        try:
            await asyncio.wait_for(done.wait(), wait_seconds)
        except TimeoutError as exc:
            raise SmokeFailure(
                f"no end of task within {wait_seconds:.0f}s (replies so far: {replies})"
            ) from exc
    finally:
        await sio.disconnect()
    if errors:
        raise SmokeFailure(f"the app answered with an error: {errors[0][:300]}")
    answer = " ".join(r.strip() for r in replies.values() if r.strip())
    if not answer:
        raise SmokeFailure("the task ended without an assistant reply")
    return answer


async def run(args: argparse.Namespace) -> str:
    base = args.url.rstrip("/")
    cookie = await login_cookie(base, args.auth, args.header)
    return await chat_turn(base, cookie, args.message, args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--message", default="Reply with the single word: pong")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--auth", choices=["password", "header", "none"], default="password")
    parser.add_argument("--header", help="NAME=VALUE sent to /auth/header (auth proxy mode)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        answer = asyncio.run(run(args))
    except (SmokeFailure, OSError, socketio.exceptions.SocketIOError, httpx.HTTPError) as exc:
        print(f"smoke test FAILED after {time.monotonic() - started:.1f}s: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test passed in {time.monotonic() - started:.1f}s: {answer[:200]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
