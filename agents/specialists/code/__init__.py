"""Code specialist: CodeLlama-34B-Instruct on TabbyAPI, or any OpenAI-compatible server."""

import re

from agents.specialists.base import SpecialistSpec
from agents.specialists.code.specialist import MODEL, build

SPEC = SpecialistSpec(
    name="code",
    title="Code",
    description="Writes, explains, reviews and debugs source code in any programming language.",
    enable_hint="set ENSEMBLE_CODE__BASE_URL (and ENSEMBLE_CODE__MODEL) to an OpenAI-compatible server "
    "such as TabbyAPI serving CodeLlama-34B-Instruct",
    asks_for=re.compile(
        r"\b(write|fix|debug|refactor|review)\b.{0,40}\b(code|function|script|program|class)\b", re.I | re.S
    ),
    build=build,
    model_role=MODEL,
    command="/code",
)
