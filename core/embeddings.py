"""What every embedder is (TEI, OpenAI-compatible, the local model), for documents and memory alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    """Turns texts into unit-length vectors of `dimension` floats; async, so the event loop never waits.

    `model_name` is recorded with stored vectors, so that a changed model is caught instead of mixed in.
    """

    model_name: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...
