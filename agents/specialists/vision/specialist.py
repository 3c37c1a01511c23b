"""The vision specialist: questions about images shared in the chat, answered by a vision model."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from langchain_core.runnables import RunnableConfig

from agents.specialists.base import FileRef, Services, SpecialistResult, TurnContext
from agents.specialists.vision.client import VisionClient, vision_messages
from agents.specialists.vision.images import (
    ImageLimits,
    ImageRejected,
    PreparedImage,
    prepare_image,
    validate_image,
)
from agents.specialists.vision.prompts import (
    DEFAULT_QUESTION,
    NO_IMAGE_MESSAGE,
    SKIPPED_IMAGES_NOTE,
    VISION_SYSTEM_PROMPT,
)
from core.errors import describe_server_error
from core.models import ModelRole
from core.settings import Settings

MODEL = ModelRole("vision", embedded=False)  # ENSEMBLE_VISION__BASE_URL; the embedded model cannot see

MAX_IMAGES = 4
_SEVERAL = re.compile(
    r"\b(images|pictures|photos|screenshots|both|all|each|these|those|them|compare|comparison|difference|differ)\b",
    re.I,
)


def pick_images(request: str, ctx: TurnContext, limit: int = MAX_IMAGES) -> list[FileRef]:
    """Which of the chat's images a question is about, oldest first.

    The images attached to this very message; else those named in the question; else, for a
    question about several ("compare these images"), the newest few; else the newest one.
    """
    images = list(ctx.images())
    if not images:
        return []
    new_ids = {f.id for f in ctx.new_files}
    attached = [f for f in images if f.id in new_ids]
    if attached:
        return attached[-limit:]
    lowered = request.lower()
    named = [f for f in images if f.name and f.name.lower() in lowered]
    if named:
        return named[-limit:]
    if _SEVERAL.search(request):
        return images[-limit:]
    return images[-1:]


class VisionSpecialist:
    """Prepares the chosen images (off the event loop) and asks the vision model about them."""

    name = "vision"

    def __init__(self, client: VisionClient, settings: Settings) -> None:
        self._client = client
        self._limits = ImageLimits.from_settings(settings.uploads)
        self._system = settings.prompt("vision.system", client.client.model_name, VISION_SYSTEM_PROMPT)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        chosen = pick_images(request, ctx)
        if not chosen:
            return SpecialistResult(content=NO_IMAGE_MESSAGE, error=True)
        prepared: list[tuple[str, PreparedImage]] = []
        refused: list[str] = []
        for ref in chosen:
            try:
                image = await asyncio.to_thread(prepare_image, ref.file_path, self._limits, name=ref.name)
            except ImageRejected as exc:
                refused.append(str(exc))
            else:
                prepared.append((ref.name, image))
        if not prepared:
            return SpecialistResult(content=" ".join(refused), error=True)
        messages = vision_messages(self._system, request.strip() or DEFAULT_QUESTION, prepared)
        try:
            answer = await self._client.ask(messages, config)
        except Exception as exc:
            problem = describe_server_error(
                exc, what=f"The vision model ({self._client.where})", timeout=self._client.timeout
            )
            if problem is None:
                raise
            return SpecialistResult(content=problem, error=True)
        if not answer:
            return SpecialistResult(content="The vision model returned an empty answer.", error=True)
        if refused:
            answer += "\n\n" + SKIPPED_IMAGES_NOTE.format(reasons=" ".join(refused))
        return SpecialistResult(content=answer)


def build(services: Services) -> VisionSpecialist | None:
    client = services.model(MODEL)
    return None if client is None else VisionSpecialist(VisionClient(client), services.settings)


def check_upload(file: FileRef, settings: Settings) -> FileRef:
    """An uploaded image, checked against the upload limits (blocking: Pillow reads its header);
    its MIME type is the one its content shows. Raises `ImageRejected` with the reason."""
    info = validate_image(file.path, ImageLimits.from_settings(settings.uploads), name=file.name)
    return replace(file, mime=info.mime)
