"""Web-search specialist: Tavily (API key) or a self-hosted SearxNG; answers cite result URLs only."""

import re

from agents.specialists.base import Specialist, SpecialistSpec
from agents.specialists.search.specialist import MODEL, SearchSpecialist, build


async def _aclose(specialist: Specialist) -> None:
    if isinstance(specialist, SearchSpecialist):
        await specialist.aclose()


SPEC = SpecialistSpec(
    name="search",
    title="Web search",
    description="Searches the web for current facts, news, prices, releases and anything that needs "
    "up-to-date sources; answers cite the pages found.",
    enable_hint="set ENSEMBLE_SEARCH__API_KEY to a Tavily API key, or ENSEMBLE_SEARCH__BACKEND=searxng "
    "and ENSEMBLE_SEARCH__BASE_URL to a SearxNG instance with JSON output enabled",
    asks_for=re.compile(
        r"\b(search|look\s+up|google)\b.{0,30}\b(web|internet|online|for)\b|\b(latest|today'?s|current)\s+news\b",
        re.I | re.S,
    ),
    build=build,
    model_role=MODEL,
    command="/search",
    aclose=_aclose,
)
