"""The vision model's client: OpenAI chat completions with base64 `image_url` content parts.

Any OpenAI-compatible vision server works (LLaVA-1.6 on SGLang, vLLM, OpenAI); the chat client
itself comes from `core.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.vision.images import PreparedImage
from agents.specialists.vision.prompts import IMAGE_LABEL
from core.models import ModelClient


def vision_messages(
    system: str, question: str, images: Sequence[tuple[str, PreparedImage]]
) -> list[BaseMessage]:
    """A system message and one user message: each image (labelled when several), then the question."""
    parts: list[str | dict[str, Any]] = []
    for n, (name, image) in enumerate(images, start=1):
        if len(images) > 1:
            parts.append({"type": "text", "text": IMAGE_LABEL.format(n=n, name=name)})
        parts.append({"type": "image_url", "image_url": {"url": image.data_url()}})
    parts.append({"type": "text", "text": question})
    return [SystemMessage(system), HumanMessage(content=parts)]


class VisionClient:
    """Asks the vision model about prepared images, streaming its answer."""

    def __init__(self, client: ModelClient) -> None:
        self.client = client

    @property
    def where(self) -> str:
        return self.client.where

    @property
    def timeout(self) -> float:
        return self.client.endpoint.timeout

    async def ask(self, messages: list[BaseMessage], config: RunnableConfig) -> str:
        """The model's answer (its tokens stream through `config`)."""
        return (await self.client.llm.ainvoke(messages, config=config)).text.strip()
