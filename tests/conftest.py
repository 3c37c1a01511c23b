"""Fixtures shared by the whole suite: free ports, the real local llama.cpp server, the machine's PostgreSQL."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from core.local_llm import LocalLLMServer
from core.settings import LocalLLMSettings

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "tests" / "specs"  # upstream specs, copied with their provenance (PROVENANCE.md)
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start and stop an app of their own (marked `own_app`) run last: a Chainlit process that
    stops deletes `.files` (the session files of uploads) in the app root, which every app started from
    the repository shares, so a session-wide app's uploads would fail after it."""
    own = [item for item in items if item.get_closest_marker("own_app")]
    items[:] = [item for item in items if not item.get_closest_marker("own_app")] + own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """Upstream specs (OpenAPI of TEI and OpenAI, CRD schemas), the repository's own copy."""
    assert SPECS.is_dir(), f"upstream specs missing at {SPECS}"
    return SPECS


@pytest.fixture(scope="session")
async def local_llm(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalLLMSettings]:
    """A real llama.cpp OpenAI-compatible server on SmolLM2-135M, started once per test session."""
    settings = LocalLLMSettings(port=free_port(), startup_timeout=120)
    log = tmp_path_factory.mktemp("local-llm") / "server.log"
    async with LocalLLMServer(settings, log):
        yield settings


@pytest.fixture(scope="session")
def local_postgres() -> str:
    """The machine's PostgreSQL (database `test`), or a skip saying it is unreachable."""
    try:
        with psycopg.connect(LOCAL_PG, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 (database test) is unreachable: {exc}")
    return LOCAL_PG


@pytest.fixture(scope="session")
def artifacts_dir() -> Iterator[Path]:
    """Where tests leave files for people to look at (screenshots): test-results/ in the repo."""
    path = REPO / "test-results"
    path.mkdir(exist_ok=True)
    yield path
