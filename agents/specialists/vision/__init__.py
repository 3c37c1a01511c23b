"""Vision specialist: questions about uploaded images, LLaVA-1.6 on SGLang or any OpenAI-compatible server."""

import re

from agents.specialists.base import SpecialistSpec, UploadRule
from agents.specialists.vision.prompts import UNREAD_IMAGE
from agents.specialists.vision.specialist import MODEL, build, check_upload

SPEC = SpecialistSpec(
    name="vision",
    title="Vision",
    description="Answers questions about images the user uploaded in this chat: describes them, reads "
    "their text, compares them.",
    enable_hint="set ENSEMBLE_VISION__BASE_URL (and ENSEMBLE_VISION__MODEL) to an OpenAI-compatible "
    "vision server, such as SGLang serving LLaVA-1.6",
    asks_for=re.compile(
        r"\b(this|the|my|that|these|attached|uploaded)\s+(image|picture|photo|screenshot|diagram)s?\b"
        r"|\bwhat('?s| is| do you see)\b.{0,30}\b(image|picture|photo)\b",
        re.I | re.S,
    ),
    build=build,
    model_role=MODEL,
    needs=("recent_image",),
    command="/vision",
    uploads=UploadRule(kinds=("image",), check=check_upload, unread=UNREAD_IMAGE),
)
