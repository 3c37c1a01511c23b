"""A model-backed specialist that exists only in the tests: its own code, its own model role, nothing else."""

from __future__ import annotations

import re

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Services, SpecialistResult, SpecialistSpec, TurnContext
from core.models import ModelClient, ModelRole

POET = ModelRole("poet")  # its server: ENSEMBLE_POET__BASE_URL, like any model role


class PoetSpecialist:
    name = "poet"

    def __init__(self, client: ModelClient) -> None:
        self.client = client

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        reply = await self.client.llm.ainvoke([HumanMessage(request)], config=config)
        return SpecialistResult(content=reply.text.strip())


def build(services: Services) -> PoetSpecialist | None:
    client = services.model(POET)
    return None if client is None else PoetSpecialist(client)


SPEC = SpecialistSpec(
    name="poet",
    title="Poet",
    description="Writes short poems.",
    enable_hint="set ENSEMBLE_POET__BASE_URL",
    asks_for=re.compile(r"(?!)"),
    build=build,
    model_role=POET,
    command="/poem",
)
