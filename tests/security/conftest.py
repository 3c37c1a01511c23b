"""The running app with four password accounts, and helpers that act as each of them (or as nobody)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import RunningApp, start_app
from tests.conftest import REPO
from tests.support.chat_client import ChatSocket, signed_in
from tests.support.recording_server import RecordingServer, recording_server

AUDIT = REPO / "tests" / "support" / "connect_audit"  # its sitecustomize logs the app's connections
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"

# alice and bob are the two users of the authorization suite; carol, dave, erin and grace the limits tests'
USERS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-3",
         "dave": "dave-password-44", "erin": "erin-password-555", "grace": "grace-password-6666"}
# The shared app trusts one proxy hop (as behind the load balancer), so each throttling test can come
# from its own client address (X-Forwarded-For) without slowing down the other tests' logins.
# Small limits, so that the tests reach them quickly; an image server configured with a key that
# /readyz must not show (nothing listens there).
LIMITS = {"LOGIN_WINDOW": "10", "LOGIN_FAILURES_PER_ACCOUNT": "3", "LOGIN_FAILURES_PER_CLIENT": "8",
          "UPLOADS_PER_WINDOW": "6", "UPLOAD_WINDOW": "60", "TURNS_PER_USER": "1", "TRUSTED_PROXY_HOPS": "1"}
APP_ENV = {**{f"ENSEMBLE_LIMITS__{k}": v for k, v in LIMITS.items()},
           "ENSEMBLE_UPLOADS__MAX_BYTES": str(1024 * 1024),
           "ENSEMBLE_IMAGE__BASE_URL": "http://127.0.0.1:9", "ENSEMBLE_IMAGE__API_KEY": "image-key-that-must-not-leak"}


def create_users(data: Path, env: dict[str, str], names: tuple[str, ...] = tuple(USERS)) -> None:
    for name in names:
        subprocess.run([sys.executable, "-m", "chainlit_app.admin", "create-user", name, "--password-stdin"],
                       input=f"{USERS[name]}\n".encode(), cwd=REPO, env={**env, "ENSEMBLE_DATA_DIR": str(data)},
                       check=True, capture_output=True)


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 24) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Upload:
    """A file a user shared in a chat, as the history (the data layer) knows it."""

    thread_id: str
    element_id: str
    name: str
    url: str  # /files/<key>
    object_key: str
    content: bytes


async def share_file(app: RunningApp, http: httpx.AsyncClient, name: str, content: bytes,
                     mime: str = "image/png", text: str = "/memory") -> Upload:
    """Upload `name` in a new chat and send it with `text`; the element the history then holds."""
    chat = ChatSocket(app.url, http)
    await chat.connect()
    try:
        uploaded = await chat.upload(name, content, mime)
        assert uploaded.status_code == 200, uploaded.text
        await chat.send(text, [uploaded.json()["id"]])
    finally:
        await chat.close()
    assert chat.thread_id, "the chat was not created"
    thread = await wait_for_element(http, chat.thread_id)
    element = next(e for e in thread["elements"] if e["name"] == name)
    return Upload(chat.thread_id, element["id"], name, element["url"], element["objectKey"], content)


async def wait_for_element(http: httpx.AsyncClient, thread_id: str, limit: float = 30) -> dict:
    """The thread once its first element is stored (Chainlit persists elements in the background)."""
    import asyncio
    import time

    deadline = time.monotonic() + limit
    while True:
        response = await http.get(f"/project/thread/{thread_id}")
        if response.status_code == 200 and response.json() and response.json().get("elements"):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"no element stored in thread {thread_id}: {response.status_code} {response.text}")
        await asyncio.sleep(0.3)


@pytest.fixture(scope="session")
def internal() -> Iterator[RecordingServer]:
    """An "internal" server that user-supplied URLs point at: the app must never reach it."""
    with recording_server() as server:
        yield server


@pytest.fixture(scope="session")
def searxng(internal: RecordingServer) -> Iterator[RecordingServer]:
    """The search server the settings name (so the app may call it), whose results point inside."""
    results = [
        {"url": f"{internal.url}/from-a-result", "title": "Internal admin page", "content": "admin",
         "img_src": f"{internal.url}/thumb.png", "thumbnail": f"{internal.url}/thumb.png"},
        {"url": METADATA_URL, "title": "Instance metadata", "content": "credentials"},
        {"url": "https://example.com/", "title": "Example Domain", "content": "An example page."},
    ]
    with recording_server(results) as server:
        yield server


@pytest.fixture(scope="session")
def secure_app(local_llm: LocalLLMSettings, tmp_path_factory: pytest.TempPathFactory,
               searxng: RecordingServer) -> Iterator[RunningApp]:
    data = tmp_path_factory.mktemp("secure-app")
    create_users(data, dict(os.environ))
    env = {**APP_ENV, "ENSEMBLE_SEARCH__BACKEND": "searxng", "ENSEMBLE_SEARCH__BASE_URL": searxng.url,
           "PYTHONPATH": os.pathsep.join(p for p in (str(AUDIT), os.environ.get("PYTHONPATH")) if p),
           "CONNECT_AUDIT_LOG": str(data / "connections.log"),
           # the audit hook sees connections made through Python's socket module; uvloop's are made in C
           "ENSEMBLE_EVENT_LOOP": "asyncio"}
    running = start_app(data, local_llm.port, env)
    yield running
    running.stop()


@pytest.fixture(scope="session")
async def alice(secure_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(secure_app.url, "alice", USERS["alice"])
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def bob(secure_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(secure_app.url, "bob", USERS["bob"])
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def anonymous(secure_app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient(base_url=secure_app.url, timeout=60)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def alice_upload(secure_app: RunningApp, alice: httpx.AsyncClient) -> Upload:
    return await share_file(secure_app, alice, "alice-photo.png", png_bytes((10, 200, 10)))


@pytest.fixture(scope="session")
async def bob_upload(secure_app: RunningApp, bob: httpx.AsyncClient) -> Upload:
    return await share_file(secure_app, bob, "bob-secret.png", png_bytes((10, 10, 200)))
