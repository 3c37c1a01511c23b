"""Where each of Ensemble's stores lives, derived from the settings in this one place.

With no `database_url`, every store is a file under `data_dir`: SQLite for checkpoints, chat history,
accounts and memory, Milvus Lite for documents. A PostgreSQL `database_url` moves checkpoints, chat
history, accounts and memory there, each in the URL form its library speaks: libpq's for LangGraph,
asyncpg's for Chainlit's data layer, psycopg's for the accounts. Nothing here opens or creates anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from core.settings import Settings

CHECKPOINTS_FILE = "checkpoints.sqlite"
HISTORY_FILE = "history.sqlite"
ACCOUNTS_FILE = "ensemble.sqlite"
MEMORY_FILE = "memory.sqlite"
MILVUS_LITE_FILE = "milvus.db"


@dataclass(frozen=True)
class StoreLocation:
    """A store on PostgreSQL (`target`: a libpq URL) or in a SQLite file (`target`: its path, or `:memory:`)."""

    backend: Literal["sqlite", "postgres"]
    target: str

    def __str__(self) -> str:
        """Where it is, without credentials (for logs)."""
        if self.backend == "sqlite":
            return f"sqlite:{self.target}"
        parts = urlsplit(self.target)
        return f"postgres:{parts.hostname or 'local socket'}{parts.path}"


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower()


def store_location(url: str) -> StoreLocation:
    """`postgresql[+driver]://…` or `sqlite[+driver]:///path` (`sqlite://` alone: in memory); else ValueError."""
    scheme = _scheme(url)
    if scheme.startswith("postgres"):
        return StoreLocation("postgres", "postgresql" + url[len(scheme) :])
    if scheme.startswith("sqlite"):
        rest = url[len(scheme) + 3 :] if url[len(scheme) :].startswith("://") else ""
        path = unquote(rest[1:] if rest.startswith("/") else rest)
        return StoreLocation("sqlite", path or ":memory:")
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use postgresql:// or sqlite:///")


def postgres(settings: Settings) -> StoreLocation | None:
    """The app database when `database_url` names PostgreSQL."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return store_location(url) if _scheme(url).startswith("postgres") else None


def checkpoints_location(settings: Settings) -> StoreLocation:
    """LangGraph's checkpoints: the PostgreSQL app database, else a SQLite file."""
    return postgres(settings) or StoreLocation("sqlite", str(settings.data_dir / CHECKPOINTS_FILE))


def memory_location(settings: Settings) -> StoreLocation:
    """Long-term memory: `memory.url`, else the PostgreSQL app database, else a SQLite file."""
    if settings.memory.url is not None:
        return store_location(settings.memory.url.get_secret_value())
    return postgres(settings) or StoreLocation("sqlite", str(settings.data_dir / MEMORY_FILE))


def history_url(settings: Settings) -> str:
    """Chainlit's chat history (SQLAlchemy async URL): the PostgreSQL app database over asyncpg, else SQLite."""
    database = postgres(settings)
    if database is not None:
        return "postgresql+asyncpg" + database.target.removeprefix("postgresql")
    return f"sqlite+aiosqlite:///{(settings.data_dir / HISTORY_FILE).resolve()}"


def accounts_url(settings: Settings) -> str:
    """The accounts table (SQLAlchemy async URL): `database_url` (PostgreSQL or SQLite), else a SQLite file."""
    if settings.database_url is None:
        return f"sqlite+aiosqlite:///{settings.data_dir / ACCOUNTS_FILE}"
    return sqlalchemy_url(settings.database_url.get_secret_value())


def sqlalchemy_url(url: str) -> str:
    """`url` with an async driver (`postgresql://` → psycopg 3 unless asyncpg is named, `sqlite://` → aiosqlite)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url.split(':', 1)[0]!r}")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        driver = scheme.split("+", 1)[1] if "+" in scheme else ""
        return f"postgresql+{driver if driver in ('psycopg', 'asyncpg') else 'psycopg'}://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url


def milvus_uri(settings: Settings) -> str:
    """The documents' Milvus: `rag.milvus_uri`, else a Milvus Lite file."""
    return settings.rag.milvus_uri or str((settings.data_dir / MILVUS_LITE_FILE).resolve())
