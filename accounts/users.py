"""User accounts for password login (and stable opaque ids for header/OAuth logins), on SQLAlchemy async.

SQLite file by default (`data_dir/ensemble.sqlite`), PostgreSQL when `database_url` says so (core.databases).
The table is `ensemble_users`: Chainlit's own data layer already owns a table called `users`.
Passwords are hashed with Argon2id (argon2-cffi) in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import DateTime, String, Text, UniqueConstraint, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.databases import accounts_url
from core.settings import Settings

log = logging.getLogger(__name__)

PASSWORD_PROVIDER = "password"
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_IDENTIFIER_CHARS = 320
_FIRST_USER_LOCK_KEY = 0x656E7375  # an arbitrary constant naming "the first account" advisory lock


class UserError(ValueError):
    """A user-facing problem with an account request (bad name, weak password, name taken)."""


class UserExists(UserError):
    """An account with this identifier already exists."""


class _Base(DeclarativeBase):
    pass


class _UserRow(_Base):
    __tablename__ = "ensemble_users"
    __table_args__ = (UniqueConstraint("provider", "identifier", name="ensemble_users_provider_identifier"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    identifier: Mapped[str] = mapped_column(String(MAX_IDENTIFIER_CHARS))
    display_name: Mapped[str] = mapped_column(String(MAX_IDENTIFIER_CHARS))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class User:
    """An account. `id` is the opaque stable id that the app passes to the graph as the user id."""

    id: str
    identifier: str
    display_name: str
    provider: str
    created_at: datetime


def normalize_identifier(identifier: str) -> str:
    """The canonical form of a login name: NFKC, trimmed, lower-cased; raises `UserError` if unusable."""
    if not isinstance(identifier, str):
        raise UserError("a user name must be text")
    canonical = unicodedata.normalize("NFKC", identifier).strip().lower()
    if not canonical:
        raise UserError("a user name must not be empty")
    if len(canonical) > MAX_IDENTIFIER_CHARS:
        raise UserError(f"a user name must be at most {MAX_IDENTIFIER_CHARS} characters")
    if any(unicodedata.category(ch).startswith(("C", "Z")) and ch != " " for ch in canonical):
        raise UserError("a user name must not contain control or unusual space characters")
    return canonical


def check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"a password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"a password must have at most {MAX_PASSWORD_CHARS} characters")


class UserStore:
    """Accounts: create them, check passwords, map external logins to stable opaque ids."""

    def __init__(self, engine: AsyncEngine, hasher: PasswordHasher | None = None) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self._first_user_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str, *, hasher: PasswordHasher | None = None) -> UserStore:
        """Connect to `url` (an async SQLAlchemy URL) and create the table if it is missing."""
        if url.startswith("sqlite") and ":memory:" not in url and "///" in url:
            Path(url.split("///", 1)[1].split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_pre_ping=True)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_Base.metadata.create_all)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, hasher)

    @classmethod
    async def from_settings(cls, settings: Settings) -> UserStore:
        """The accounts of this deployment (where `core.databases.accounts_url` says)."""
        try:
            url = accounts_url(settings)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        return await cls.open(url)

    async def aclose(self) -> None:
        await self._engine.dispose()

    async def create_user(self, identifier: str, password: str, *, display_name: str | None = None) -> User:
        """A new password account; raises `UserExists` or `UserError`."""
        canonical = normalize_identifier(identifier)
        check_password(password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        shown = display_name or identifier.strip()
        return await self._insert(PASSWORD_PROVIDER, canonical, shown, password_hash)

    async def verify_password(self, identifier: str, password: str) -> User | None:
        """The account if `password` is right for `identifier`, else None (also for unknown names)."""
        try:
            canonical = normalize_identifier(identifier)
        except UserError:
            return None
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_CHARS:
            return None
        row = await self._row(PASSWORD_PROVIDER, canonical)
        if row is None or not row.password_hash:
            await asyncio.to_thread(self._burn, password)  # same cost as a real check: names stay secret
            return None
        if not await asyncio.to_thread(self._verify, row.password_hash, password):
            return None
        if self._hasher.check_needs_rehash(row.password_hash):
            await self._store_hash(row.id, await asyncio.to_thread(self._hasher.hash, password))
        return _user(row)

    async def set_password(self, identifier: str, password: str) -> bool:
        """Replace a password account's password; False if there is no such account."""
        check_password(password)
        row = await self._row(PASSWORD_PROVIDER, normalize_identifier(identifier))
        if row is None:
            return False
        await self._store_hash(row.id, await asyncio.to_thread(self._hasher.hash, password))
        return True

    async def ensure_external(self, provider: str, subject: str, *, display_name: str | None = None) -> User:
        """The account of a login vouched for elsewhere (auth-proxy header, OAuth), made on first sight.

        `provider` names the source (e.g. `header`, `oauth:github`); `subject` is its stable user key.
        """
        if provider == PASSWORD_PROVIDER or not provider or len(provider) > 32:
            raise UserError("an external provider needs its own short name")
        canonical = normalize_identifier(subject)
        row = await self._row(provider, canonical)
        if row is not None:
            return _user(row)
        try:
            return await self._insert(provider, canonical, display_name or subject.strip(), None)
        except UserExists:
            row = await self._row(provider, canonical)  # created concurrently by another request
            if row is None:
                raise
            return _user(row)

    async def get(self, user_id: str) -> User | None:
        async with self._sessions() as session:
            row = await session.get(_UserRow, user_id)
            return None if row is None else _user(row)

    async def get_by_identifier(self, identifier: str, provider: str = PASSWORD_PROVIDER) -> User | None:
        try:
            row = await self._row(provider, normalize_identifier(identifier))
        except UserError:
            return None
        return None if row is None else _user(row)

    async def has_password_accounts(self) -> bool:
        """Whether any password account exists (a fresh instance has none)."""
        async with self._sessions() as session:
            query = select(_UserRow.id).where(_UserRow.provider == PASSWORD_PROVIDER).limit(1)
            return (await session.scalars(query)).first() is not None

    async def create_first_user(self, identifier: str, password: str) -> User | None:
        """Create this password account only if there is none yet (first login on a fresh instance).

        Serialised within the process, and on PostgreSQL across replicas by an advisory lock, so two
        simultaneous first logins cannot both become accounts.
        """
        async with self._first_user_lock:
            if self._engine.dialect.name != "postgresql":
                return await self._create_if_first(identifier, password)
            key = {"key": _FIRST_USER_LOCK_KEY}
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT pg_advisory_lock(:key)"), key)
                try:
                    return await self._create_if_first(identifier, password)
                finally:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                    await conn.commit()

    async def _create_if_first(self, identifier: str, password: str) -> User | None:
        if await self.has_password_accounts():
            return None
        return await self.create_user(identifier, password)

    async def list_users(self) -> list[User]:
        async with self._sessions() as session:
            rows = await session.scalars(select(_UserRow).order_by(_UserRow.provider, _UserRow.identifier))
            return [_user(row) for row in rows]

    async def delete_user(self, identifier: str, provider: str = PASSWORD_PROVIDER) -> User | None:
        """Delete an account; returns it (its id names the data to erase elsewhere) or None."""
        user = await self.get_by_identifier(identifier, provider)
        if user is None:
            return None
        async with self._sessions.begin() as session:
            await session.execute(delete(_UserRow).where(_UserRow.id == user.id))
        return user

    # --- internals -----------------------------------------------------------------------------

    async def _insert(
        self, provider: str, identifier: str, display_name: str, password_hash: str | None
    ) -> User:
        now = datetime.now(UTC)
        row = _UserRow(
            id=str(uuid.uuid4()),
            provider=provider,
            identifier=identifier,
            display_name=display_name[:MAX_IDENTIFIER_CHARS],
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise UserExists(f"a user named {identifier!r} already exists") from exc
        return _user(row)

    async def _row(self, provider: str, identifier: str) -> _UserRow | None:
        async with self._sessions() as session:
            query = select(_UserRow).where(_UserRow.provider == provider, _UserRow.identifier == identifier)
            return (await session.scalars(query)).first()

    async def _store_hash(self, user_id: str, password_hash: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(_UserRow, user_id)
            if row is not None:
                row.password_hash = password_hash
                row.updated_at = datetime.now(UTC)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    def _burn(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("not a real password")
        self._verify(self._dummy_hash, password)


def _user(row: _UserRow) -> User:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return User(row.id, row.identifier, row.display_name, row.provider, created)
