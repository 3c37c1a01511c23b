"""The web-search specialist: search, then answer from the results, citing only real result URLs."""

from __future__ import annotations

import re
from urllib.parse import unquote

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Artifact, Services, SpecialistResult, TurnContext
from agents.specialists.search.client import SearchError, WebResult, WebSearch, web_search
from agents.specialists.search.prompts import (
    EMPTY_QUERY_MESSAGE,
    NO_RESULTS_MESSAGE,
    SEARCH_RESULT_TEMPLATE,
    SEARCH_SYSTEM_PROMPT,
    SEARCH_USER_PROMPT,
    SOURCES_HEADING,
    UNSUMMARISED_INTRO,
)
from core.errors import describe_server_error
from core.models import SUPERVISOR, ModelClient
from core.settings import Settings

MODEL = SUPERVISOR  # writes the answer from the results, when there is one

SNIPPET_CHARS_FOR_MODEL = 600
SNIPPET_CHARS_FOR_LIST = 240

# A markdown link, a bare numbered citation "[2]", or a bare/autolinked URL, in that order of priority.
_TOKEN = re.compile(
    r"\[(?P<label>[^\]\n]{0,300})\]\((?P<url>[^)\s]*)(?:\s+\"[^\"\n]*\")?\)"
    r"|\[(?P<cite>\d{1,3})\](?!\()"
    r"|<?(?P<bare>https?://[^\s<>\]]+)>?"
)
_SOURCES_TAIL = re.compile(
    r"\n\s*(?:#+\s*)?\**(?:sources|references|citations)\**\s*:?\**\s*\n.*\Z", re.I | re.S
)


def _norm(url: str) -> str:
    return unquote(url.strip().strip("<>")).rstrip("/").lower()


def _trim_url(url: str) -> str:
    """A bare URL without the sentence punctuation or closing bracket that follows it."""
    while url and (url[-1] in ".,;:!?'\"" or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def md_url(url: str) -> str:
    """A URL safe inside a markdown link destination."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _md_text(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


def cite_only_results(text: str, hits: list[WebResult]) -> str:
    """`text` with every link pointing at a result: numbered links are renumbered or repaired
    to their result, bare `[n]` become links, and any other URL is dropped."""
    index = {_norm(hit.url): n for n, hit in enumerate(hits, start=1)}

    def link(n: int) -> str:
        return f"[{n}]({md_url(hits[n - 1].url)})"

    def number(label: str) -> int | None:
        label = label.strip()
        return int(label) if label.isdigit() and 1 <= int(label) <= len(hits) else None

    def replace(match: re.Match[str]) -> str:
        if match.group("cite") is not None:
            n = number(match.group("cite"))
            return link(n) if n else ""
        if match.group("bare") is not None:
            url = _trim_url(match.group("bare"))
            tail = match.group("bare")[len(url) :]
            n = index.get(_norm(url))
            return (link(n) if n else "") + tail
        label, url = match.group("label"), match.group("url")
        n = index.get(_norm(url))
        if n is not None:
            return (
                link(n)
                if number(label) is not None or label.strip().isdigit()
                else (f"[{label}]({md_url(hits[n - 1].url)})")
            )
        n = number(label)
        if n is not None:
            return link(n)  # the right number with an invented URL: point it at the real result
        return "" if label.strip().isdigit() else label  # an invented link: keep only its words

    text = _SOURCES_TAIL.sub("", text.strip())
    text = _TOKEN.sub(replace, text)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def sources_block(hits: list[WebResult]) -> str:
    lines = [f"{n}. [{_md_text(hit.title)}]({md_url(hit.url)})" for n, hit in enumerate(hits, start=1)]
    return SOURCES_HEADING + "\n" + "\n".join(lines)


def results_for_model(hits: list[WebResult]) -> str:
    return "\n\n".join(
        SEARCH_RESULT_TEMPLATE.format(
            n=n, title=hit.title, url=md_url(hit.url), snippet=hit.snippet[:SNIPPET_CHARS_FOR_MODEL]
        )
        for n, hit in enumerate(hits, start=1)
    )


def plain_results(query: str, hits: list[WebResult]) -> str:
    lines = [UNSUMMARISED_INTRO.format(query=query)]
    for n, hit in enumerate(hits, start=1):
        snippet = hit.snippet[:SNIPPET_CHARS_FOR_LIST] + (
            "…" if len(hit.snippet) > SNIPPET_CHARS_FOR_LIST else ""
        )
        lines.append(f"{n}. [{_md_text(hit.title)}]({md_url(hit.url)}) — {snippet}".rstrip(" —"))
    return "\n".join(lines)


def source_artifacts(hits: list[WebResult]) -> tuple[Artifact, ...]:
    return tuple(
        Artifact(
            kind="source",
            name=hit.title,
            url=hit.url,
            content=hit.snippet,
            meta={"n": n, **({"published": hit.published} if hit.published else {})},
        )
        for n, hit in enumerate(hits, start=1)
    )


class SearchSpecialist:
    """Searches the web, then has the chat model answer from the results with checked citations."""

    name = "search"

    def __init__(self, backend: WebSearch, writer: ModelClient | None, settings: Settings) -> None:
        self.backend = backend
        self._writer = writer
        model = writer.model_name if writer else ""
        self._system = settings.prompt("search.system", model, SEARCH_SYSTEM_PROMPT)
        self._user = settings.prompt("search.user", model, SEARCH_USER_PROMPT)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        query = " ".join(request.split())
        if not query:
            return SpecialistResult(content=EMPTY_QUERY_MESSAGE, error=True)
        try:
            hits = await self.backend.search(query)
        except SearchError as exc:
            return SpecialistResult(content=str(exc), error=True)
        if not hits:
            return SpecialistResult(content=NO_RESULTS_MESSAGE.format(query=query[:200]))
        artifacts = source_artifacts(hits)
        answer, problem = await self._answer(query, hits)
        if answer is None:
            note = f"\n\n_{problem} So here are the results themselves._" if problem else ""
            return SpecialistResult(content=plain_results(query, hits) + note, artifacts=artifacts)
        return SpecialistResult(content=f"{answer}\n\n{sources_block(hits)}", artifacts=artifacts)

    async def _answer(self, question: str, hits: list[WebResult]) -> tuple[str | None, str | None]:
        """The model's answer with its links checked, or (None, why not)."""
        if self._writer is None:
            return None, None
        messages = [
            SystemMessage(self._system),
            HumanMessage(self._user.format(question=question, results=results_for_model(hits))),
        ]
        # Called without the step's `config`: unchecked tokens are not streamed; the checked answer is the result.
        try:
            reply = await self._writer.llm.ainvoke(messages, config={"run_name": "search.answer"})
        except Exception as exc:
            problem = describe_server_error(
                exc, what=self._writer.where, timeout=self._writer.endpoint.timeout
            )
            if problem is None:
                raise
            return None, problem
        answer = cite_only_results(reply.text, hits)
        return (answer, None) if answer else (None, "The chat model gave an empty answer.")

    async def aclose(self) -> None:
        await self.backend.aclose()


def build(services: Services) -> SearchSpecialist | None:
    """Over the configured search backend; without the supervisor's model it lists the results."""
    backend = web_search(services.settings.search, services.http)
    if backend is None:
        return None
    return SearchSpecialist(backend, services.model(MODEL), services.settings)
