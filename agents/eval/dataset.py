"""The labelled request set: loading, subsets, attached files and the messages the router sees."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from PIL import Image, ImageDraw
from pydantic import BaseModel, Field, field_validator, model_validator

from agents.specialists.base import FileRef
from agents.supervisor.state import for_model, user_message

DEFAULT_DATASET = Path(__file__).with_name("sets") / "routing.yaml"  # the model-decision set (issue 8)
ROUTER_DATASET = Path(__file__).with_name("sets") / "router.yaml"  # the cascade's set (issue 17)
ANSWER = "answer"  # the label of "the supervisor answers directly" (no hand-off)
MULTI = "multi"  # the category of items that expect several specialists
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Turn(BaseModel):
    """One earlier message of the chat."""

    user: str | None = None
    assistant: str | None = None

    @model_validator(mode="after")
    def _one_role(self) -> Turn:
        if (self.user is None) == (self.assistant is None):
            raise ValueError("a history turn has exactly one of `user` or `assistant`")
        return self

    def message(self) -> AnyMessage:
        return HumanMessage(self.user) if self.user is not None else AIMessage(self.assistant or "")


class Item(BaseModel):
    """One labelled request: what the user says, and which specialists should handle it."""

    id: str
    text: str
    expect: frozenset[str]
    also_ok: list[frozenset[str]] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    history: list[Turn] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        return value

    @property
    def category(self) -> str:
        if not self.expect:
            return ANSWER
        return next(iter(self.expect)) if len(self.expect) == 1 else MULTI

    def accepts(self, chosen: frozenset[str]) -> bool:
        return chosen == self.expect or chosen in self.also_ok

    def specialists(self) -> set[str]:
        names = set(self.expect)
        for alternative in self.also_ok:
            names |= alternative
        return names


class Dataset(BaseModel):
    version: Literal[1]
    items: list[Item]

    @model_validator(mode="after")
    def _unique_ids(self) -> Dataset:
        ids = [item.id for item in self.items]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate item ids: {', '.join(duplicates)}")
        return self


def load_dataset(path: Path = DEFAULT_DATASET) -> list[Item]:
    """The items of a YAML set (see the header of sets/routing.yaml for the format)."""
    return Dataset.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).items


def categories(items: Sequence[Item], specialists: Sequence[str]) -> list[str]:
    """Categories in report order: direct answer, each specialist, then multi-specialist."""
    present = {item.category for item in items}
    return [c for c in [ANSWER, *specialists, MULTI] if c in present]


def stratified(items: Sequence[Item], limit: int) -> list[Item]:
    """At most `limit` items, taken round-robin over categories so a small subset covers them all."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.category, []).append(item)
    chosen: list[Item] = []
    depth = 0
    while len(chosen) < min(limit, len(items)):
        for group in groups.values():
            if depth < len(group) and len(chosen) < limit:
                chosen.append(group[depth])
        depth += 1
    order = {item.id: i for i, item in enumerate(items)}
    return sorted(chosen, key=lambda item: order[item.id])


def _draw_png(path: Path, name: str) -> None:
    """A small real image (shapes in colours derived from the name), as a user might upload."""
    digest = hashlib.sha256(name.encode()).digest()
    image = Image.new("RGB", (96, 64), (digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 56, 56), fill=(digest[3], digest[4], digest[5]))
    draw.rectangle((52, 20, 88, 52), fill=(digest[6], digest[7], digest[8]))
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def attach(items: Sequence[Item], directory: Path) -> dict[str, FileRef]:
    """FileRefs for every attached file name; images are written to `directory` as real image files.

    Documents are referenced by name only: the routing decision sees attachments only as the
    "(attached: ...)" note of the user's message, never their content.
    """
    directory.mkdir(parents=True, exist_ok=True)
    refs: dict[str, FileRef] = {}
    for item in items:
        for name in item.files:
            if name in refs:
                continue
            path = directory / name
            if name.lower().endswith(IMAGE_SUFFIXES):
                _draw_png(path, name)
                mime = "image/jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "image/png"
                refs[name] = FileRef(name, name, str(path), mime, path.stat().st_size, "image")
            elif name.lower().endswith((".csv", ".tsv", ".xlsx")):
                refs[name] = FileRef(name, name, str(path), "text/csv", 0, "table")
            else:
                refs[name] = FileRef(name, name, str(path), "application/octet-stream", 0, "document")
    return refs


def messages_for(item: Item, refs: dict[str, FileRef], history_limit: int) -> list[AnyMessage]:
    """The chat the router reads for this item, as the graph shows it (the last `history_limit` messages)."""
    messages = [turn.message() for turn in item.history]
    messages.append(user_message(item.text, [refs[name] for name in item.files]))
    return for_model(messages[-history_limit:])
