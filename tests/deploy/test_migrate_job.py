"""The PreSync migration Job's script, run for real against the machine's PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.postgres

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def scratch_db() -> Iterator[str]:
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    name = f"ensemble_migrate_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _run(url: str | None, cwd: Path = Path("/tmp"), **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENSEMBLE_", "SMOKE_"))}
    env.update(extra)
    env["PYTHONPATH"] = str(REPO)
    if url:
        env["ENSEMBLE_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "migrate.py")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migration_creates_every_schema_and_the_smoke_account_idempotently(
    scratch_db: str, tmp_path: Path
) -> None:
    # every sync runs it again; the second run also resets the smoke-test account's password
    for password in ("first-password-1", "second-password-2"):
        # in its own directory: importing Chainlit writes a .chainlit/ config where it runs
        proc = _run(scratch_db, tmp_path, SMOKE_USERNAME="smoke-test", SMOKE_PASSWORD=password)
        assert proc.returncode == 0, proc.stderr
        assert (
            "schemas ready: accounts table, smoke-test account, chat history, memory store, checkpoints"
            in proc.stderr
        )
    with psycopg.connect(scratch_db) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        accounts = conn.execute(
            "SELECT count(*) FROM ensemble_users WHERE identifier = 'smoke-test'"
        ).fetchone()
    assert {"ensemble_users", "store", "checkpoints", "checkpoint_writes", "checkpoint_blobs"} <= tables
    assert {"users", "threads", "steps", "elements", "feedbacks"} <= tables, "Chainlit's history tables"
    assert accounts == (1,)
    check = (
        "import asyncio, sys\n"
        "from accounts.users import UserStore\n"
        "async def main():\n"
        "    users = await UserStore.open(sys.argv[1])\n"
        "    try:\n"
        "        new = await users.verify_password('smoke-test', 'second-password-2')\n"
        "        old = await users.verify_password('smoke-test', 'first-password-1')\n"
        "    finally:\n"
        "        await users.aclose()\n"
        "    print(bool(new), bool(old))\n"
        "asyncio.run(main())\n"
    )
    url = scratch_db.replace("postgresql://", "postgresql+psycopg://")
    out = subprocess.run(
        [sys.executable, "-c", check, url],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_migration_fails_the_sync_when_the_database_is_unreachable() -> None:
    proc = _run("postgresql://postgres@127.0.0.1:1/nowhere")
    assert proc.returncode == 1
    assert "migration failed" in proc.stderr


def test_migration_refuses_without_a_database_url() -> None:
    proc = _run(None)
    assert proc.returncode != 0
    assert "ENSEMBLE_DATABASE_URL is not set" in proc.stderr
