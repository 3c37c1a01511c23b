"""Resume a chat after the app restarts, in the browser, on SQLite files and on the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import create_users, last_answer, login, send, start_app

pytestmark = [pytest.mark.browser, pytest.mark.llm, pytest.mark.own_app]
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """No override for SQLite; for PostgreSQL a fresh database on the local server, dropped afterwards."""
    if request.param == "sqlite":
        yield {}
        return
    name = f"ensemble_resume_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for this test: {exc}")
    yield {"ENSEMBLE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}"}
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_resume_after_restart(
    database: dict[str, str], local_llm: LocalLLMSettings, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    create_users(tmp_path, {**os.environ, **database})
    app = start_app(tmp_path, local_llm.port, database)
    try:
        page = login(browser, app.url, "alice")
        send(page, "/code Write a Python function named triple that multiplies by three.")
        first = last_answer(page)
        assert "triple" in first
        page.wait_for_url("**/thread/**", timeout=10_000)
        thread_path = urlparse(page.url).path
        page.context.close()
    finally:
        app.stop()

    app = start_app(tmp_path, local_llm.port, database)
    try:
        page = login(browser, app.url, "alice")
        page.goto(app.url + thread_path)
        page.wait_for_load_state("networkidle")  # the resumed session is connected
        page.get_by_text("Write a Python function named triple").first.wait_for(timeout=20_000)
        assert "triple" in page.locator("body").inner_text()
        send(page, "/code Now write a function named quadruple.")
        assert "quadruple" in last_answer(page)
        page.screenshot(path=str(artifacts_dir / f"browser-resume-{'pg' if database else 'sqlite'}.png"))
        page.context.close()
    finally:
        app.stop()
