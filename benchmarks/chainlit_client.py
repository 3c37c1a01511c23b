"""A load client that speaks Chainlit 2.12's socket.io protocol, as its web front-end does.

Connect: socket.io at `/ws/socket.io` (websocket transport) with the `auth` payload that
`chainlit/socket.py:connect` reads (sessionId, clientType, threadId, userEnv, chatProfile), then the
`connection_successful` event; with a login, the session first signs in at `/auth/header` (an auth
proxy's header, Ensemble's `header` auth mode) and sends the cookie it gets. A turn: emit
`client_message` with a user step; the server answers with `stream_start`/`stream_token` (tokens),
`new_message`/`update_message` (steps and the final message) and `task_end` when `on_message` returns.
Bytes: `wire_bytes` is what the kernel received on the session's TCP connection (Linux `tcp_info`),
with permessage-deflate offered as browsers offer it (Chromium always does; uvicorn accepts it unless
`UVICORN_WS_PER_MESSAGE_DEFLATE` is false); `frame_bytes` is the socket.io text as sent, uncompressed,
plus frame headers (what a client that offers no compression receives).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import engineio
import httpx
import socketio

TCP_INFO_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received (u64) in Linux's struct tcp_info


def tcp_bytes_received(sock: Any) -> int | None:
    """Payload bytes the kernel received on this TCP socket so far, or None where it does not say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (AttributeError, OSError):
        return None
    if len(info) < TCP_INFO_BYTES_RECEIVED + 8:
        return None
    return int(struct.unpack_from("=Q", info, TCP_INFO_BYTES_RECEIVED)[0])


def _frame_header(size: int) -> int:
    return 2 if size < 126 else 4 if size < 65536 else 10


class CountingEngineIOClient(engineio.AsyncClient):
    """engine.io client that counts the bytes of every packet it receives."""

    received_bytes = 0

    async def _receive_packet(self, pkt: Any) -> None:
        encoded = pkt.encode()
        size = len(encoded.encode() if isinstance(encoded, str) else encoded)
        self.received_bytes += size + _frame_header(size)
        await super()._receive_packet(pkt)


class CountingClient(socketio.AsyncClient):
    def _engineio_client_class(self) -> type[engineio.AsyncClient]:
        return CountingEngineIOClient


@dataclass
class TurnResult:
    ttft: float | None  # seconds from sending to the first answer token
    last_token: float | None  # seconds from sending to the last answer token
    total: float  # seconds from sending to task_end
    tokens: int
    text: str  # the final answer message's content
    wire_bytes: int  # TCP payload bytes received during the turn (compressed where negotiated)
    frame_bytes: int  # socket.io frames received during the turn, uncompressed
    events: dict[str, int] = field(default_factory=dict)


class ChainlitSession:
    """One browser-like chat session over socket.io."""

    def __init__(self, url: str, login: tuple[str, str] | None = None, compress: bool = True) -> None:
        self.url = url
        self.login = login  # (header, value): sign in through Chainlit's /auth/header first
        self.session_id = str(uuid.uuid4())
        options = {"compress": 15} if compress else {}  # permessage-deflate offered, as browsers do
        self.client = CountingClient(reconnection=False, websocket_extra_options=options)
        self._events: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self.client.on("*", self._on_any)

    async def _on_any(self, event: str, data: Any = None) -> None:
        self._events.put_nowait((event, data, time.perf_counter()))

    @property
    def frame_bytes(self) -> int:
        eio = self.client.eio
        return eio.received_bytes if isinstance(eio, CountingEngineIOClient) else 0

    @property
    def _websocket(self) -> Any:
        """engine.io's aiohttp websocket, once connected (else None)."""
        return getattr(self.client.eio, "ws", None)

    @property
    def wire_bytes(self) -> int:
        """TCP payload bytes received on the websocket's connection (frame bytes where the OS does not say)."""
        ws = self._websocket
        received = tcp_bytes_received(ws.get_extra_info("socket")) if ws is not None else None
        return self.frame_bytes if received is None else received

    @property
    def compressed(self) -> bool:
        """Whether the server accepted permessage-deflate on this session's websocket."""
        ws = self._websocket
        return bool(ws is not None and ws.compress)

    async def connect(self, wait: float = 30.0) -> None:
        auth = {
            "sessionId": self.session_id,
            "clientType": "webapp",
            "threadId": None,
            "userEnv": "{}",
            "chatProfile": None,
        }
        headers = {"X-Chainlit-Session-Id": self.session_id, "X-Chainlit-Client-Type": "webapp"}
        if self.login is not None:
            async with httpx.AsyncClient(timeout=wait) as http:
                response = await http.post(f"{self.url}/auth/header", headers=dict([self.login]))
                response.raise_for_status()
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in response.cookies.items())
        await self.client.connect(
            self.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth=auth,
            headers=headers,
            wait_timeout=wait,
        )
        await self.client.emit("connection_successful")

    async def turn(self, text: str, limit: float = 60.0) -> TurnResult:
        """Send one user message and wait for `task_end`; times and bytes of what came back."""
        while not self._events.empty():
            self._events.get_nowait()
        message_id = str(uuid.uuid4())
        step = {
            "id": message_id,
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        wire_before, frames_before = self.wire_bytes, self.frame_bytes
        started = time.perf_counter()
        await self.client.emit("client_message", {"message": step, "fileReferences": []})
        deadline = started + limit
        first: float | None = None
        last: float | None = None
        tokens = 0
        final = ""
        counts: dict[str, int] = {}
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no task_end within {limit} s")
            event, data, at = await asyncio.wait_for(self._events.get(), remaining)
            counts[event] = counts.get(event, 0) + 1
            if event == "stream_token" and isinstance(data, dict) and not data.get("isInput"):
                tokens += 1
                first = at - started if first is None else first
                last = at - started
            elif (event == "stream_start" and isinstance(data, dict) and data.get("type") == "assistant_message"
                  and data.get("output")):
                # Chainlit sends an answer's first token inside `stream_start` (Message.stream_token: the
                # message with its content so far), so this is when its first text shows.
                tokens += 1
                first = at - started if first is None else first
                last = at - started
            elif event in ("new_message", "update_message") and isinstance(data, dict):
                if data.get("type") == "assistant_message":
                    final = str(data.get("output") or "")
            elif event == "task_end" and counts.get("task_start", 0):
                return TurnResult(
                    first, last, at - started, tokens, final,
                    self.wire_bytes - wire_before, self.frame_bytes - frames_before, counts,
                )

    async def close(self) -> None:
        await self.client.disconnect()
