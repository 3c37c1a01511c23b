"""What the memory layer stores and returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Category = Literal["identity", "preference", "project", "task", "other"]
CATEGORIES: tuple[Category, ...] = ("identity", "preference", "project", "task", "other")

FACT_TEXT_MAX = 300
FactText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=FACT_TEXT_MAX)]
KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
FactKey = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=KEY_PATTERN)]


class Fact(BaseModel):
    """A fact worth keeping about a user, e.g. `Fact(text="The user's name is Ana", key="name")`.

    `key` names a single-valued slot (name, home_city, employer): a new fact with the same key
    replaces the old one instead of being added beside it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: FactText
    key: FactKey | None = None
    category: Category = "other"


class FactList(BaseModel):
    """The extraction model's whole reply."""

    model_config = ConfigDict(extra="ignore")

    facts: list[Fact] = Field(default_factory=list, max_length=10)


@dataclass(frozen=True)
class Memory:
    """One stored memory of one user. `score` is the recall similarity where there is one."""

    id: str
    text: str
    key: str | None
    category: Category
    created_at: datetime
    updated_at: datetime
    score: float | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @classmethod
    def from_value(
        cls, key: str, value: dict[str, Any], created_at: datetime, updated_at: datetime, score: float | None
    ) -> Memory:
        category = value.get("category")
        return cls(
            id=key,
            text=str(value.get("text", "")),
            key=value.get("key") if isinstance(value.get("key"), str) else None,
            category=category if category in CATEGORIES else "other",
            created_at=created_at,
            updated_at=updated_at,
            score=score,
        )


@dataclass(frozen=True)
class Remembered:
    """What `remember` did with one fact: stored it as `memory`, replacing `previous` if that is set."""

    memory: Memory
    previous: Memory | None = None

    @property
    def updated(self) -> bool:
        return self.previous is not None
