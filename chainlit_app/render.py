"""Turning the agent layer's artifacts into Chainlit elements."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import chainlit as cl

from agents.specialists.base import Artifact, FileKind
from agents.supervisor.events import Decided
from rag.types import IngestProgress


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx")


def file_kind(mime: str, name: str = "") -> FileKind:
    if mime.startswith("image/"):
        return "image"
    if name.lower().endswith(TABLE_SUFFIXES):
        return "table"
    if mime.startswith(("application/", "text/", "message/")):
        return "document"
    return "other"


def artifact_elements(artifacts: Iterable[Artifact], *, for_step: bool) -> list[Any]:
    """Images inline, sources and long code as side panels a click away.

    The final answer shows all of them; a step shows only its sources (what it found).
    """
    elements: list[Any] = []
    for artifact in artifacts:
        name = artifact.name
        if for_step and artifact.kind != "source":
            continue
        if artifact.kind == "image" and artifact.path:
            elements.append(cl.Image(name=name, path=artifact.path, display="inline"))
        elif artifact.kind == "code" and artifact.content:
            language = artifact.meta.get("language")
            elements.append(cl.Text(name=name, content=artifact.content, language=language, display="side"))
        elif artifact.kind == "source":
            body = "\n\n".join(x for x in (artifact.url, artifact.content) if x)
            elements.append(cl.Text(name=name, content=body, display="side"))
    return elements


def progress_text(update: IngestProgress) -> str:
    """One line of a document's ingestion progress, e.g. `embedding: pages 10/10, chunks 24/40`."""
    parts = []
    if update.pages_total:
        parts.append(f"pages {update.pages_done}/{update.pages_total}")
    if update.chunks_total:
        parts.append(f"chunks {update.chunks_done}/{update.chunks_total}")
    line = f"{update.stage}: {', '.join(parts)}" if parts else update.stage
    return f"{line}\n{update.message}" if update.message else line


def safe_name(name: str) -> str:
    """A file or folder name made only of safe characters (never a path)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned[:120] or "file"


def with_source_links(content: str, artifacts: Iterable[Artifact]) -> str:
    """The answer with a `Sources:` line naming each cited passage (documents' [n] markers), so that
    Chainlit links them: side panels open only from names that appear in the message."""
    names = [
        a.name for a in artifacts
        if a.kind == "source" and a.meta.get("marker") is not None and a.name not in content
    ]
    if not names:
        return content
    return content.rstrip() + "\n\nSources: " + " · ".join(names)


STAGES = {
    "command": "your command",
    "phrase": "an unmistakable phrase",
    "facts": "the facts of the turn",
    "fast": "the fast classifier",
    "model": "the supervisor model",
}


def decision_title(event: Decided, titles: dict[str, str]) -> str:
    """The Supervisor step's title: what was chosen, by which stage, how sure, how fast."""
    chosen = " + ".join(titles.get(name, name) for name in event.specialists) or "answered directly"
    details: list[str] = [event.chosen_by]
    if event.confidence is not None and event.chosen_by in ("fast", "facts"):
        details.append(f"{event.confidence:.2f}")
    details.append(f"{event.seconds * 1000:.0f} ms" if event.seconds < 1 else f"{event.seconds:.1f} s")
    return f"Supervisor: {chosen} ({', '.join(details)})"


def decision_text(event: Decided, titles: dict[str, str]) -> str:
    """The Supervisor step's body, in words."""
    chosen = ", ".join(titles.get(name, name) for name in event.specialists)
    what = f"Handed to {chosen}" if chosen else "Answered directly"
    line = f"{what}, chosen by {STAGES.get(event.chosen_by, event.chosen_by)}"
    if event.confidence is not None:
        line += f" with confidence {event.confidence:.2f}"
    line += f", in {event.seconds * 1000:.0f} ms." if event.seconds < 1 else f", in {event.seconds:.1f} s."
    if event.attempts > 1:
        line += f" The model needed {event.attempts} attempts."
    if event.fell_back:
        line += " The model's decision could not be used, so the supervisor answered."
    return line
