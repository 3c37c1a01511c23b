"""User accounts on a real SQLite file and the real PostgreSQL, and the `ensemble-admin` console command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr

from accounts.users import UserError, UserExists, UserStore
from chainlit_app.admin import main as admin_main
from core.databases import accounts_url, sqlalchemy_url
from core.settings import MemorySettings, Settings
from memory.factory import open_memory_service

REPO = Path(__file__).resolve().parents[2]
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only: keep hashing quick


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'app' / 'ensemble.sqlite'}"
    else:
        base = request.getfixturevalue("local_postgres")
        schema = f"ens_users_{uuid.uuid4().hex[:12]}"
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        url = sqlalchemy_url(base) + f"?options=-csearch_path%3D{schema}"
    store = await UserStore.open(url, hasher=FAST)
    yield store
    await store.aclose()
    if schema is not None:
        async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def test_create_and_verify(users: UserStore) -> None:
    alice = await users.create_user("Alice", "correct horse battery")
    assert alice.identifier == "alice" and alice.display_name == "Alice" and alice.provider == "password"
    assert uuid.UUID(alice.id)  # an opaque id, not the login name
    assert await users.verify_password("alice", "correct horse battery") == alice
    assert await users.verify_password(" ALICE ", "correct horse battery") == alice
    assert await users.verify_password("alice", "wrong password") is None
    assert await users.verify_password("alice", "") is None
    assert await users.verify_password("nobody", "correct horse battery") is None
    assert await users.verify_password("", "x") is None
    assert await users.get(alice.id) == alice
    assert await users.get_by_identifier("ALICE") == alice


async def test_passwords_are_hashed_not_stored(users: UserStore) -> None:
    await users.create_user("bob", "s3cret-passphrase")
    row = await users._row("password", "bob")
    assert row is not None and row.password_hash is not None
    assert "s3cret-passphrase" not in row.password_hash
    assert row.password_hash.startswith("$argon2id$")


async def test_duplicates_and_bad_input_are_refused(users: UserStore) -> None:
    await users.create_user("carol", "long enough password")
    with pytest.raises(UserExists):
        await users.create_user("CAROL", "another long password")
    with pytest.raises(UserError):
        await users.create_user("dave", "short")
    for bad in ["", "   ", "tab\tname", "new\nline", "x" * 321]:
        with pytest.raises(UserError):
            await users.create_user(bad, "long enough password")


async def test_set_password_and_delete(users: UserStore) -> None:
    erin = await users.create_user("erin", "first password!")
    assert await users.set_password("erin", "second password!")
    assert await users.verify_password("erin", "first password!") is None
    assert await users.verify_password("erin", "second password!") == erin
    assert not await users.set_password("nobody", "whatever password")
    assert await users.delete_user("erin") == erin
    assert await users.verify_password("erin", "second password!") is None
    assert await users.delete_user("erin") is None


async def test_external_logins_get_stable_opaque_ids(users: UserStore) -> None:
    first = await users.ensure_external("header", "Frank@Example.com", display_name="Frank")
    again = await users.ensure_external("header", "frank@example.com")
    assert first == again and first.id != "frank@example.com"
    other = await users.ensure_external("oauth:github", "frank@example.com")
    assert other.id != first.id  # another provider vouching for the same name is another account
    assert await users.verify_password("frank@example.com", "anything at all") is None  # no password login
    racing = await asyncio.gather(*(users.ensure_external("header", "gina@example.com") for _ in range(5)))
    assert len({u.id for u in racing}) == 1
    with pytest.raises(UserError):
        await users.ensure_external("password", "x")


async def test_outdated_hashes_are_upgraded_on_login(users: UserStore, tmp_path: Path) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1)
    legacy = UserStore(users._engine, hasher=weak)
    await legacy.create_user("hank", "an old password")
    before = await users._row("password", "hank")
    assert before is not None and before.password_hash is not None and "m=512" in before.password_hash
    assert await users.verify_password("hank", "an old password") is not None
    after = await users._row("password", "hank")
    assert after is not None and after.password_hash is not None and "m=1024" in after.password_hash


async def test_only_the_first_login_creates_an_account(
    users: UserStore, request: pytest.FixtureRequest
) -> None:
    await users.ensure_external("header", "proxy-user@example.com")  # external logins do not count
    assert not await users.has_password_accounts()
    stores = [users]
    if "postgres" in request.node.name:  # another replica: its own process lock, the same database
        stores.append(UserStore(users._engine, hasher=FAST))
    created = await asyncio.gather(
        *(stores[n % len(stores)].create_first_user(f"first{n}", "first password") for n in range(4))
    )
    winners = [user for user in created if user is not None]
    assert len(winners) == 1
    assert await users.has_password_accounts()
    assert await users.create_first_user("late", "late password") is None
    assert await users.verify_password(winners[0].identifier, "first password") == winners[0]


def test_database_urls() -> None:
    assert sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert sqlalchemy_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    settings = Settings(data_dir=Path("/srv/data"), _env_file=None)  # type: ignore[call-arg]
    assert accounts_url(settings) == "sqlite+aiosqlite:////srv/data/ensemble.sqlite"
    settings = Settings(database_url=SecretStr("postgresql://u@h/db"), _env_file=None)  # type: ignore[call-arg]
    assert accounts_url(settings) == "postgresql+psycopg://u@h/db"


def test_admin_create_user_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setattr("sys.stdin", _Lines("a good password\n"))
    assert admin_main(["create-user", "Ivy", "--password-stdin"], settings=settings) == 0
    assert "created user ivy (id " in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", _Lines("another password\n"))
    assert admin_main(["create-user", "ivy", "--password-stdin"], settings=settings) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Lines("short\n"))
    assert admin_main(["create-user", "jay", "--password-stdin"], settings=settings) == 1

    async def check() -> None:
        store = await UserStore.from_settings(settings)
        try:
            assert await store.verify_password("ivy", "a good password") is not None
        finally:
            await store.aclose()

    asyncio.run(check())


def test_admin_delete_user_erases_their_memories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path, memory=MemorySettings(vector="off"), _env_file=None)  # type: ignore[call-arg]

    async def setup() -> tuple[str, str]:
        store = await UserStore.from_settings(settings)
        memory = await open_memory_service(settings)
        assert memory is not None
        try:
            leo = await store.create_user("leo", "leo's password")
            mia = await store.create_user("mia", "mia's password")
            await memory.remember(leo.id, ["The user likes chess.", "The user lives in Oslo."])
            await memory.remember(mia.id, ["The user likes go."])
            return leo.id, mia.id
        finally:
            await memory.aclose()
            await store.aclose()

    leo_id, mia_id = asyncio.run(setup())
    assert admin_main(["delete-user", "leo"], settings=settings) == 0
    assert capsys.readouterr().out.strip() == f"deleted user leo (id {leo_id}) and 2 memories"

    async def remaining() -> tuple[int, int]:
        memory = await open_memory_service(settings)
        assert memory is not None
        try:
            return len(await memory.list_memories(leo_id)), len(await memory.list_memories(mia_id))
        finally:
            await memory.aclose()

    assert asyncio.run(remaining()) == (0, 1)


def test_admin_console_command_end_to_end(tmp_path: Path) -> None:
    """`python -m chainlit_app.admin` as an operator runs it: settings from ENSEMBLE_* env, password on stdin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSEMBLE_")}
    env["ENSEMBLE_DATA_DIR"] = str(tmp_path / "data")

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chainlit_app.admin", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(REPO)},
            timeout=120,
            check=False,
        )

    created = run("create-user", "kate@example.com", "--password-stdin", stdin="kate's password\n")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created user kate@example.com (id ")
    assert (tmp_path / "data" / "ensemble.sqlite").is_file()
    listed = run("list-users")
    assert listed.returncode == 0 and "kate@example.com" in listed.stdout
    changed = run("set-password", "kate@example.com", "--password-stdin", stdin="a new password\n")
    assert changed.returncode == 0, changed.stderr
    assert run("delete-user", "nobody").returncode == 1
    deleted = run("delete-user", "kate@example.com")
    assert deleted.returncode == 0 and "deleted user kate@example.com" in deleted.stdout
    assert deleted.stdout.rstrip().endswith("and 0 memories")
    assert run("bogus-command").returncode == 2


class _Lines:
    """A stand-in stdin with `readline`."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""
