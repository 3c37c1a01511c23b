"""The code specialist: an OpenAI-compatible code model (CodeLlama on TabbyAPI) with its own prompt."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Artifact, Services, SpecialistResult, TurnContext
from agents.specialists.code.prompts import CODE_SYSTEM_PROMPT, EMPTY_REQUEST_MESSAGE
from core.models import ModelClient, ModelRole
from core.settings import Settings

MODEL = ModelRole("code")  # ENSEMBLE_CODE__BASE_URL; the embedded model stands in while it is unset

FENCE = re.compile(r"```([\w+#.-]*)\n(.*?)```", re.S)
LONG_CODE_LINES = 40


class CodeSpecialist:
    """Writes and explains code; long code blocks also come back as artifacts for a collapsible view."""

    name = "code"

    def __init__(self, client: ModelClient, settings: Settings) -> None:
        self._client = client
        self._system = settings.prompt("code.system", client.model_name, CODE_SYSTEM_PROMPT)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        if not request.strip():
            return SpecialistResult(content=EMPTY_REQUEST_MESSAGE, error=True)
        messages = [SystemMessage(self._system), HumanMessage(request)]
        text = (await self._client.llm.ainvoke(messages, config=config)).text.strip()
        return SpecialistResult(content=text, artifacts=long_code_blocks(text))


def long_code_blocks(text: str) -> tuple[Artifact, ...]:
    """Fenced blocks long enough to deserve their own collapsible element."""
    blocks = []
    for n, match in enumerate(FENCE.finditer(text), start=1):
        language, code = match.group(1) or "text", match.group(2)
        if code.count("\n") + 1 >= LONG_CODE_LINES:
            blocks.append(
                Artifact(kind="code", name=f"snippet-{n}.{language}", content=code, meta={"language": language})
            )
    return tuple(blocks)


def build(services: Services) -> CodeSpecialist | None:
    client = services.model(MODEL)
    return None if client is None else CodeSpecialist(client, services.settings)
