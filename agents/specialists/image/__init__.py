"""Image specialist: text-to-image with SDXL-Turbo on TorchServe, or any OpenAI Images API server."""

import re

from agents.specialists.base import SpecialistSpec
from agents.specialists.image.specialist import build, forget_chat

SPEC = SpecialistSpec(
    name="image",
    title="Image generation",
    description="Creates a new picture from a text description (drawings, photos, illustrations); "
    "takes an optional seed, 1-4 steps and a size such as 768x512.",
    enable_hint="set ENSEMBLE_IMAGE__BASE_URL to a TorchServe inference address serving SDXL-Turbo "
    "(see deploy/torchserve/README.md), or ENSEMBLE_IMAGE__BACKEND=openai with the base URL of an "
    "OpenAI Images API server",
    asks_for=re.compile(
        r"\b(generate|create|draw|paint|render|make)\b.{0,30}\b(image|picture|drawing|painting|illustration|photo|logo)\b",
        re.I | re.S,
    ),
    build=build,
    command="/image",
    forget_chat=forget_chat,
)
