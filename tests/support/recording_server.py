"""A local HTTP server that records every request it gets; optionally it answers as SearxNG's JSON API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, results: list[dict[str, Any]] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.results = results  # set: answer `/search` as SearxNG does

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.server.results is not None and self.path.startswith("/search"):
            body = json.dumps({"query": "q", "results": self.server.results}).encode()
            kind = "application/json"
        else:
            body, kind = b"internal secret", "text/plain"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def recording_server(results: list[dict[str, Any]] | None = None) -> Iterator[RecordingServer]:
    server = RecordingServer(results)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
