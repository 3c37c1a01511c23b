"""The PostSync smoke test's client, run for real against a running Chainlit server (a tiny app made
here, with Chainlit's password login), so the protocol it speaks is the one Chainlit serves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import REPO

pytest.importorskip("chainlit")
pytest.importorskip("aiohttp", reason="python-socketio's asyncio client needs aiohttp")

APP = """
import chainlit as cl

@cl.password_auth_callback
def auth(username: str, password: str):
    if (username, password) == ("smoke", "s3cret-pass"):
        return cl.User(identifier="smoke")
    return None

@cl.on_message
async def on_message(message: cl.Message):
    if message.content == "fail please":
        raise RuntimeError("model server unreachable")
    reply = cl.Message(content="")
    for token in ["po", "ng"]:
        await reply.stream_token(token)
    await reply.send()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chainlit_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("smoke-app")
    (workdir / "app.py").write_text(APP)
    port = _free_port()
    env = {**os.environ, "CHAINLIT_AUTH_SECRET": "x" * 64, "DO_NOT_TRACK": "1"}
    chainlit = Path(sys.executable).with_name("chainlit")
    proc = subprocess.Popen(
        [str(chainlit), "run", "app.py", "--host", "127.0.0.1", "--port", str(port), "--headless"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/project/settings", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            proc.kill()
            pytest.fail("chainlit did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _smoke(
    url: str, *args: str, user: str = "smoke", password: str = "s3cret-pass"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "SMOKE_USERNAME": user, "SMOKE_PASSWORD": password}
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "smoke_chat.py"), "--url", url, "--timeout", "20", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_chat_turn_gets_the_streamed_reply(chainlit_url: str) -> None:
    proc = _smoke(chainlit_url, "--auth", "password", "--message", "ping")
    assert proc.returncode == 0, proc.stderr
    assert "smoke test passed" in proc.stdout and "'pong'" in proc.stdout


def test_wrong_password_fails_the_sync(chainlit_url: str) -> None:
    proc = _smoke(chainlit_url, "--auth", "password", password="wrong")
    assert proc.returncode == 1
    assert "login failed: HTTP 401" in proc.stderr


def test_an_error_reply_fails_the_sync(chainlit_url: str) -> None:
    proc = _smoke(chainlit_url, "--auth", "password", "--message", "fail please")
    assert proc.returncode == 1
    assert "model server unreachable" in proc.stderr


def test_without_login_the_socket_is_refused(chainlit_url: str) -> None:
    proc = _smoke(chainlit_url, "--auth", "none")
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr
