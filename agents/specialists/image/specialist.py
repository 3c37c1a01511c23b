"""The image specialist: text-to-image (SDXL-Turbo on TorchServe, or an OpenAI Images API server)."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Artifact, Services, SpecialistResult, TurnContext
from agents.specialists.image.client import ImageBackend, ImageGenerationError, image_backend
from agents.specialists.image.prompts import (
    EMPTY_PROMPT_MESSAGE,
    REQUEST_PREAMBLE,
    RESULT_MESSAGE,
    RESULT_MESSAGE_NO_SEED,
)
from core.settings import ImageSettings, Settings

MAX_SEED = 2**31 - 1
MIN_SIDE, MAX_SIDE = 64, 2048

_SEED = re.compile(r"[,;(]?\s*\bseed\s*(?:=|:|of|is)?\s*(\d{1,10})\b\)?", re.I)
_STEPS = re.compile(
    r"[,;(]?\s*\b(?:(\d{1,2})\s*(?:inference\s+)?steps?|steps?\s*(?:=|:)\s*(\d{1,2}))\b\)?", re.I
)
_SIZE = re.compile(
    r"[,;(]?\s*\b(?:(?:size|at)\s*[:=]?\s*)?(\d{2,4})\s*[x×]\s*(\d{2,4})\b(?:\s*(?:px|pixels))?\)?", re.I
)
_NEGATIVE = re.compile(r"[,;]?\s*\bnegative(?:\s+prompt)?\s*[:=]\s*([^\n;]*)", re.I)
_PREAMBLE = re.compile(REQUEST_PREAMBLE, re.I)
_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ImageRequest:
    """What to generate, with every parameter decided."""

    prompt: str
    negative_prompt: str
    steps: int
    seed: int
    width: int
    height: int


def _side(value: int) -> int:
    """A side SDXL accepts: within bounds and a multiple of 8."""
    return max(MIN_SIDE, min(MAX_SIDE, value)) // 8 * 8


def parse_request(text: str, defaults: ImageSettings, seed: int | None = None) -> ImageRequest:
    """Read the prompt and any explicit seed, step count, size and negative prompt from `text`.

    Missing values come from `defaults`; a missing seed is drawn at random (and reported).
    """
    negative = ""
    if match := _NEGATIVE.search(text):
        negative = match.group(1).strip().strip("\"'“”")
        text = text[: match.start()] + text[match.end() :]
    if match := _SEED.search(text):
        seed = min(int(match.group(1)), MAX_SEED)
        text = text[: match.start()] + text[match.end() :]
    steps = defaults.steps
    if match := _STEPS.search(text):
        steps = int(match.group(1) or match.group(2))
        text = text[: match.start()] + text[match.end() :]
    width, height = defaults.width, defaults.height
    if match := _SIZE.search(text):
        width, height = int(match.group(1)), int(match.group(2))
        text = text[: match.start()] + text[match.end() :]
    prompt = _PREAMBLE.sub("", text.strip() + " ", count=1)
    prompt = re.sub(r"\s+", " ", prompt).strip(" ,;:.-—\"'“”")
    return ImageRequest(
        prompt=prompt,
        negative_prompt=negative,
        steps=max(1, min(4, steps)),
        seed=secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        width=_side(width),
        height=_side(height),
    )


def _save_png(data: bytes, directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}-{secrets.token_hex(4)}.png"
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


class ImageSpecialist:
    """Generates one image per request and saves it under `<data_dir>/images/<thread>/`."""

    name = "image"

    def __init__(self, backend: ImageBackend, settings: Settings) -> None:
        self.backend = backend
        self._defaults = settings.image
        self._root = settings.data_dir / "images"

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        job = parse_request(request, self._defaults)
        if not job.prompt:
            return SpecialistResult(content=EMPTY_PROMPT_MESSAGE, error=True)
        try:
            png = await self.backend.generate(
                job.prompt, job.negative_prompt, job.steps, job.seed, job.width, job.height
            )
        except ImageGenerationError as exc:
            return SpecialistResult(content=str(exc), error=True)
        path = (await asyncio.to_thread(_save_png, png, self.chat_folder(ctx.thread_id), job.seed)).resolve()
        seeded = self.backend.supports_seed
        meta: dict[str, object] = {
            "prompt": job.prompt,
            "seed": job.seed if seeded else None,
            "steps": job.steps if seeded else None,
            "width": job.width,
            "height": job.height,
            "backend": self.backend.name,
        }
        if job.negative_prompt:
            meta["negative_prompt"] = job.negative_prompt
        if seeded:
            text = RESULT_MESSAGE.format(
                prompt=job.prompt,
                seed=job.seed,
                steps=job.steps,
                plural="" if job.steps == 1 else "s",
                width=job.width,
                height=job.height,
            )
        else:
            text = RESULT_MESSAGE_NO_SEED.format(
                prompt=job.prompt, width=job.width, height=job.height, backend=self.backend.name
            )
        artifact = Artifact(kind="image", name=path.name, path=str(path), mime="image/png", meta=meta)
        return SpecialistResult(content=text, artifacts=(artifact,))

    def chat_folder(self, thread_id: str) -> Path:
        return self._root / (_SAFE_ID.sub("_", thread_id)[:80] or "chat")


async def forget_chat(specialist: object, thread_id: str) -> None:
    """Remove the images generated in a deleted chat."""
    if isinstance(specialist, ImageSpecialist):
        await asyncio.to_thread(shutil.rmtree, specialist.chat_folder(thread_id), True)


def build(services: Services) -> ImageSpecialist | None:
    backend = image_backend(services.settings.image, services.http)
    return None if backend is None else ImageSpecialist(backend, services.settings)
