"""A test client that uses the running app as Chainlit 2.12's web front-end does, over HTTP and socket.io.

`signed_in` posts the login form and keeps the session cookie; `ChatSocket` opens the socket.io
session (`chainlit/socket.py:connect` reads `sessionId`, `threadId`, ... from `auth` and the token
from the cookie), uploads files at `/project/file?session_id=` and sends `client_message`s that
reference them; `raw_get` sends a request line byte for byte (HTTP clients normalise `..`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import socketio


async def signed_in(url: str, user: str, password: str, **headers: str) -> httpx.AsyncClient:
    """An HTTP client holding `user`'s session cookie (login must succeed)."""
    client = httpx.AsyncClient(base_url=url, timeout=60)
    response = await client.post("/login", data={"username": user, "password": password}, headers=headers)
    if response.status_code != 200:
        await client.aclose()
        raise AssertionError(f"login of {user} failed: {response.status_code} {response.text}")
    return client


def cookie_header(client: httpx.AsyncClient | None) -> str:
    return "" if client is None else "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def raw_get(url: str, target: str, cookie: str = "") -> tuple[int, bytes]:
    """GET `target` exactly as written (no dot-segment removal, no re-encoding): status and body."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@dataclass
class Turn:
    """What came back for one message: the final assistant text and every event by name."""

    answer: str
    messages: list[str]
    events: dict[str, list[Any]] = field(default_factory=dict)


class ChatSocket:
    """One browser-like chat session (a tab), optionally resuming `thread_id`."""

    def __init__(self, url: str, http: httpx.AsyncClient | None, thread_id: str | None = None) -> None:
        self.url = url
        self.http = http
        self.session_id = str(uuid.uuid4())
        self.thread_id = thread_id
        self.client = socketio.AsyncClient(reconnection=False)
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        if event == "first_interaction" and isinstance(data, dict) and data.get("thread_id"):
            self.thread_id = str(data["thread_id"])
        elif event == "new_message" and isinstance(data, dict) and data.get("threadId") and not self.thread_id:
            self.thread_id = str(data["threadId"])
        self._events.put_nowait((event, data))

    async def connect(self, session_id: str | None = None) -> None:
        self.session_id = session_id or self.session_id
        auth = {"sessionId": self.session_id, "clientType": "webapp", "threadId": self.thread_id,
                "userEnv": "{}", "chatProfile": None}
        headers = {"X-Chainlit-Session-Id": self.session_id, "X-Chainlit-Client-Type": "webapp"}
        if cookie := cookie_header(self.http):
            headers["Cookie"] = cookie
        await self.client.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"],
                                  auth=auth, headers=headers, wait_timeout=30)
        await self.client.emit("connection_successful")

    async def upload(self, name: str, content: bytes, mime: str) -> httpx.Response:
        """POST a file to the session's upload endpoint, as the composer does."""
        http = self.http or httpx.AsyncClient(base_url=self.url, timeout=60)
        return await http.post("/project/file", params={"session_id": self.session_id},
                               files={"file": (name, content, mime)})

    async def send(self, text: str, file_ids: list[str] | None = None, limit: float = 180.0) -> Turn:
        """Send a user message and wait until the server's `task_end` for it."""
        await self.post(text, file_ids)
        return await self.wait_turn(limit)

    async def post(self, text: str, file_ids: list[str] | None = None) -> None:
        """Send a user message without waiting (events that came before it are dropped)."""
        while not self._events.empty():
            self._events.get_nowait()
        step = {"id": str(uuid.uuid4()), "threadId": "", "name": "User", "type": "user_message",
                "output": text, "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        refs = [{"id": file_id} for file_id in file_ids or []]
        await self.client.emit("client_message", {"message": step, "fileReferences": refs})

    async def wait_event(self, name: str, limit: float = 60.0) -> Any:
        """The next event called `name` (others before it are kept for `wait_turn`)."""
        kept: list[tuple[str, Any]] = []
        try:
            while True:
                event, data = await asyncio.wait_for(self._events.get(), limit)
                kept.append((event, data))
                if event == name:
                    return data
        finally:
            for item in kept:
                self._events.put_nowait(item)

    async def wait_turn(self, limit: float = 180.0) -> Turn:
        events: dict[str, list[Any]] = {}
        messages: list[str] = []
        answer = ""
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no task_end within {limit} s; events: {list(events)}")
            event, data = await asyncio.wait_for(self._events.get(), remaining)
            events.setdefault(event, []).append(data)
            if event in ("new_message", "update_message") and isinstance(data, dict) \
                    and data.get("type") == "assistant_message":
                answer = str(data.get("output") or "")
                if event == "new_message":
                    messages.append(answer)
            if event == "task_end" and events.get("task_start"):
                return Turn(answer, messages, events)

    async def close(self) -> None:
        await self.client.disconnect()
