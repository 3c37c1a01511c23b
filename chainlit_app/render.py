"""Turning the agent layer's artifacts into Chainlit elements."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import chainlit as cl

from agents.specialists.base import FileKind


def utc_now() -> str:
    return datetime.now(UTC).isoformat()


def file_kind(mime: str) -> FileKind:
    if mime.startswith("image/"):
        return "image"
    if mime.startswith(("application/", "text/", "message/")):
        return "document"
    return "other"


def artifact_elements(artifacts: Iterable[dict[str, Any]], *, for_step: bool) -> list[Any]:
    """Images inline, sources and long code as side panels a click away.

    The final answer shows all of them; a step shows only its sources (what it found).
    """
    elements: list[Any] = []
    for artifact in artifacts:
        kind, name = artifact["kind"], artifact["name"]
        if for_step and kind != "source":
            continue
        if kind == "image" and artifact.get("path"):
            elements.append(cl.Image(name=name, path=artifact["path"], display="inline"))
        elif kind == "code" and artifact.get("content"):
            language = artifact.get("meta", {}).get("language")
            elements.append(cl.Text(name=name, content=artifact["content"], language=language, display="side"))
        elif kind == "source":
            body = "\n\n".join(x for x in (artifact.get("url"), artifact.get("content")) if x)
            elements.append(cl.Text(name=name, content=body, display="side"))
    return elements
