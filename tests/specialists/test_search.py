"""Web search against a local HTTP server answering with Tavily's and SearxNG's documented shapes.

Tavily: `POST /search` with a Bearer key; 200 → {query, answer, images, results[{title, url,
content, score, raw_content, favicon}], response_time, request_id}; errors → {"detail": {"error"}}
(docs.tavily.com, API reference "Search", and tavily-python's error handling).
SearxNG: `GET /search?q=...&format=json` → {query, number_of_results, results[{url, title, content,
engine, engines, positions, score, category, publishedDate, ...}], answers, corrections, infoboxes,
suggestions, unresponsive_engines} (docs.searxng.org, "Search API"); 403 when JSON is disabled.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from agents.specialists.base import Services, TurnContext
from agents.specialists.search import SPEC
from agents.specialists.search.client import SearxngSearch, TavilySearch, WebResult
from agents.specialists.search.specialist import SearchSpecialist, cite_only_results
from core.models import ModelClient, ModelClients, chat_model
from core.settings import ChatEndpoint, LocalLLMSettings, SearchSettings, Settings
from tests.specialists.conftest import FakeUpstream, chat_route

CTX = TurnContext(user_id="u1", thread_id="t1")

TAVILY_OK = {
    "query": "who won the 2026 world cup",
    "follow_up_questions": None,
    "answer": None,
    "images": [],
    "results": [
        {
            "title": "2026 FIFA World Cup final - Wikipedia",
            "url": "https://en.wikipedia.org/wiki/2026_FIFA_World_Cup_final",
            "content": "The 2026 FIFA World Cup final was played at MetLife Stadium on 19 July 2026.",
            "score": 0.91,
            "raw_content": None,
            "favicon": "https://en.wikipedia.org/static/favicon/wikipedia.ico",
        },
        {
            "title": "World Cup final report",
            "url": "https://www.example-news.com/sport/world-cup-final-report",
            "content": "A report of the final, with the goals and the line-ups.",
            "score": 0.83,
            "raw_content": None,
            "favicon": None,
        },
    ],
    "response_time": 1.67,
    "request_id": "123e4567-e89b-12d3-a456-426614174111",
}

SEARXNG_OK = {
    "query": "rust async runtime",
    "number_of_results": 0,
    "results": [
        {
            "url": "https://tokio.rs/",
            "title": "Tokio - An asynchronous Rust runtime",
            "content": "Tokio is an asynchronous runtime for the Rust programming language.",
            "thumbnail": "",
            "engine": "duckduckgo",
            "template": "default.html",
            "parsed_url": ["https", "tokio.rs", "/", "", "", ""],
            "img_src": "",
            "priority": "",
            "engines": ["duckduckgo", "google"],
            "positions": [1, 1],
            "score": 4.0,
            "category": "general",
            "publishedDate": None,
        },
        {
            "url": "https://async.rs/",
            "title": "async-std",
            "content": "Async version of the Rust standard library.",
            "engine": "google",
            "template": "default.html",
            "parsed_url": ["https", "async.rs", "/", "", "", ""],
            "engines": ["google"],
            "positions": [2],
            "score": 1.0,
            "category": "general",
            "publishedDate": "2026-01-02T00:00:00",
        },
        {"title": "an infobox-like entry without a URL", "content": "no url", "engine": "x"},
        {
            "url": "https://smol.rs/",
            "title": "smol",
            "content": "A small and fast async runtime.",
            "engine": "bing",
            "engines": ["bing"],
            "positions": [3],
            "score": 0.5,
            "category": "general",
        },
    ],
    "answers": [],
    "corrections": [],
    "infoboxes": [],
    "suggestions": ["tokio vs async-std"],
    "unresponsive_engines": [["brave", "timeout"]],
}


def tavily_settings(fake: FakeUpstream, **kw: Any) -> SearchSettings:
    values: dict[str, Any] = {
        "backend": "tavily",
        "api_key": SecretStr("tvly-test-key"),
        "tavily_base_url": fake.base_url,
        "timeout": 5.0,
        "max_results": 5,
        "search_depth": "advanced",
        "time_range": "week",
    }
    values.update(kw)
    return SearchSettings(**values)


def searxng_settings(fake: FakeUpstream, **kw: Any) -> SearchSettings:
    values: dict[str, Any] = {
        "backend": "searxng",
        "base_url": fake.base_url,
        "timeout": 5.0,
        "max_results": 2,
    }
    values.update(kw)
    return SearchSettings(**values)


def settings_with(search: SearchSettings, tmp_path: Path) -> Settings:
    return Settings(search=search, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]


# --- Tavily ---------------------------------------------------------------------------------------


async def test_tavily_sends_configured_search_and_reads_documented_reply(upstream: FakeUpstream) -> None:
    upstream.reply("POST", "/search", json=TAVILY_OK)
    backend = TavilySearch(tavily_settings(upstream))
    try:
        hits = await backend.search("who won the 2026 world cup?")
    finally:
        await backend.aclose()
    assert [h.url for h in hits] == [r["url"] for r in TAVILY_OK["results"]]
    assert hits[0].title == "2026 FIFA World Cup final - Wikipedia"
    assert hits[0].snippet.startswith("The 2026 FIFA World Cup final")
    (request,) = upstream.requests
    assert request.headers["Authorization"] == "Bearer tvly-test-key"
    body = request.json()
    assert body["query"] == "who won the 2026 world cup?"
    assert body["search_depth"] == "advanced"
    assert body["max_results"] == 5
    assert body["time_range"] == "week"
    assert body["include_answer"] is False


async def test_specialist_without_writer_lists_results_as_sources(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reply("POST", "/search", json=TAVILY_OK)
    specialist = SearchSpecialist(
        TavilySearch(tavily_settings(upstream)), None, settings_with(SearchSettings(), tmp_path)
    )
    try:
        result = await specialist.run("who won the 2026 world cup", CTX, {})
    finally:
        await specialist.aclose()
    assert not result.error
    assert [(a.kind, a.name, a.url) for a in result.artifacts] == [
        ("source", r["title"], r["url"]) for r in TAVILY_OK["results"]
    ]
    assert result.artifacts[0].content == TAVILY_OK["results"][0]["content"]
    for url in re.findall(r"\]\(([^)]+)\)", result.content):
        assert url in {r["url"] for r in TAVILY_OK["results"]}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"detail": {"error": "Unauthorized: missing or invalid API key."}},
            r"rejected the API key \(HTTP 401\)",
        ),
        (
            429,
            {"detail": {"error": "Your request has been blocked due to excessive requests."}},
            r"HTTP 429.*excessive",
        ),
        (432, {"detail": {"error": "This request exceeds your plan's set usage limit."}}, r"HTTP 403"),
        (400, {"detail": {"error": "Invalid time_range."}}, r"HTTP 400\)\. Tavily said: Invalid time_range"),
        (500, {"detail": {"error": "Internal Server Error"}}, r"HTTP 500"),
        (503, {"detail": {"error": "upstream unavailable"}}, r"HTTP 503"),
    ],
)
async def test_tavily_http_errors_become_clear_messages(
    upstream: FakeUpstream, tmp_path: Path, status: int, body: dict[str, Any], expected: str
) -> None:
    upstream.reply("POST", "/search", status=status, json=body)
    specialist = SearchSpecialist(
        TavilySearch(tavily_settings(upstream)), None, settings_with(SearchSettings(), tmp_path)
    )
    try:
        result = await specialist.run("anything", CTX, {})
    finally:
        await specialist.aclose()
    assert result.error
    assert re.search(expected, result.content), result.content
    assert "Traceback" not in result.content


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"text": "<html>gateway page</html>", "content_type": "text/html"}, "malformed JSON"),
        ({"json": {"query": "q", "results": {"not": "a list"}}}, "no `results` list"),
    ],
)
async def test_tavily_malformed_replies(
    upstream: FakeUpstream, kwargs: dict[str, Any], expected: str
) -> None:
    upstream.reply("POST", "/search", **kwargs)
    backend = TavilySearch(tavily_settings(upstream))
    specialist = SearchSpecialist(backend, None, Settings(_env_file=None))  # type: ignore[call-arg]
    try:
        result = await specialist.run("q", CTX, {})
    finally:
        await specialist.aclose()
    assert result.error and expected in result.content, result.content


async def test_tavily_timeout_becomes_clear_message(upstream: FakeUpstream) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(TAVILY_OK)

    upstream.route("POST", "/search", slow)
    backend = TavilySearch(tavily_settings(upstream, timeout=0.3))
    specialist = SearchSpecialist(backend, None, Settings(_env_file=None))  # type: ignore[call-arg]
    try:
        result = await specialist.run("slow search", CTX, {})
    finally:
        await specialist.aclose()
    assert result.error
    assert "did not answer within 0.3 s" in result.content


async def test_tavily_unreachable_becomes_clear_message(http: httpx.AsyncClient) -> None:
    settings = SearchSettings(api_key=SecretStr("k"), tavily_base_url="http://127.0.0.1:9", timeout=2)
    specialist = SearchSpecialist(TavilySearch(settings), None, Settings(_env_file=None))  # type: ignore[call-arg]
    try:
        result = await specialist.run("q", CTX, {})
    finally:
        await specialist.aclose()
    assert result.error and "Could not reach Tavily" in result.content


# --- SearxNG --------------------------------------------------------------------------------------


async def test_searxng_json_api(upstream: FakeUpstream, http: httpx.AsyncClient) -> None:
    upstream.reply("GET", "/search", json=SEARXNG_OK)
    hits = await SearxngSearch(searxng_settings(upstream, time_range="month"), http).search(
        "rust async runtime"
    )
    assert [h.url for h in hits] == ["https://tokio.rs/", "https://async.rs/"]  # max_results=2
    assert hits[1].published == "2026-01-02T00:00:00"
    (request,) = upstream.requests
    assert request.method == "GET"
    assert request.query["q"] == "rust async runtime"
    assert request.query["format"] == "json"
    assert request.query["time_range"] == "month"


async def test_searxng_skips_results_without_url(upstream: FakeUpstream, http: httpx.AsyncClient) -> None:
    upstream.reply("GET", "/search", json=SEARXNG_OK)
    hits = await SearxngSearch(searxng_settings(upstream, max_results=10), http).search("q")
    assert [h.url for h in hits] == ["https://tokio.rs/", "https://async.rs/", "https://smol.rs/"]


@pytest.mark.parametrize(
    ("status", "kwargs", "expected"),
    [
        (403, {"text": "403 Forbidden"}, r"refused JSON output \(HTTP 403\).*search\.formats"),
        (429, {"text": "Too Many Requests"}, r"rate-limiting Ensemble \(HTTP 429\)"),
        (401, {"text": "Unauthorized"}, r"HTTP 401"),
        (502, {"text": "Bad Gateway"}, r"HTTP 502: Bad Gateway"),
        (200, {"text": "<html>not json</html>", "content_type": "text/html"}, r"could not read"),
        (200, {"text": '{"results": "oops"}', "content_type": "application/json"}, r"could not read"),
    ],
)
async def test_searxng_failures_become_clear_messages(
    upstream: FakeUpstream,
    http: httpx.AsyncClient,
    tmp_path: Path,
    status: int,
    kwargs: dict[str, Any],
    expected: str,
) -> None:
    upstream.reply("GET", "/search", status=status, **kwargs)
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream), http), None, settings_with(SearchSettings(), tmp_path)
    )
    result = await specialist.run("anything", CTX, {})
    assert result.error
    assert re.search(expected, result.content), result.content


async def test_searxng_timeout(upstream: FakeUpstream, http: httpx.AsyncClient) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(SEARXNG_OK)

    upstream.route("GET", "/search", slow)
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream, timeout=0.3), http), None, Settings(_env_file=None)
    )  # type: ignore[call-arg]
    result = await specialist.run("q", CTX, {})
    assert result.error and "did not answer within 0.3 s" in result.content


async def test_empty_query_is_not_sent(upstream: FakeUpstream, http: httpx.AsyncClient) -> None:
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream), http), None, Settings(_env_file=None)
    )  # type: ignore[call-arg]
    result = await specialist.run("  \n ", CTX, {})
    assert result.error and "What should I search" in result.content and not upstream.requests


async def test_no_results_is_said_plainly(upstream: FakeUpstream, http: httpx.AsyncClient) -> None:
    upstream.reply("GET", "/search", json={**SEARXNG_OK, "results": [], "number_of_results": 0})
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream), http), None, Settings(_env_file=None)
    )  # type: ignore[call-arg]
    result = await specialist.run("zzzz qqqq", CTX, {})
    assert not result.error and "found nothing" in result.content and not result.artifacts


# --- the answer: written by a chat model, its links checked ---------------------------------------


HITS = [
    WebResult("Tokio", "https://tokio.rs/", "Tokio is a runtime."),
    WebResult("async-std", "https://async.rs/docs", "async-std docs."),
]


@pytest.mark.parametrize(
    ("model_text", "expected"),
    [
        ("Tokio is a runtime [1](https://tokio.rs/).", "Tokio is a runtime [1](https://tokio.rs/)."),
        # a right number with an invented URL is pointed at the real result
        ("Tokio [1](https://tokio.example.org/fake).", "Tokio [1](https://tokio.rs/)."),
        # a real URL with the wrong number is renumbered
        ("Docs [1](https://async.rs/docs).", "Docs [2](https://async.rs/docs)."),
        # an invented link loses its URL; an out-of-range citation is dropped
        ("See [the book](https://invented.example/book) and [7](https://x.example).", "See the book and."),
        # bare citations become links; bare invented URLs are removed
        ("Tokio [1] and https://evil.example/x.", "Tokio [1](https://tokio.rs/) and."),
        ("More: https://async.rs/docs", "More: [2](https://async.rs/docs)"),
        # the model's own source list is dropped (Ensemble appends the checked one)
        ("Answer [2].\n\nSources:\n1. [x](https://made.up/)", "Answer [2](https://async.rs/docs)."),
    ],
)
def test_citations_point_only_at_results(model_text: str, expected: str) -> None:
    assert cite_only_results(model_text, HITS) == expected


async def test_invented_links_from_a_real_http_chat_server_are_repaired(
    upstream: FakeUpstream, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    upstream.reply("GET", "/search", json=SEARXNG_OK)
    chat_route(
        upstream,
        "Tokio is the most used runtime [1](https://tokio.rs/) [2](https://fake.example/async). "
        "See also [a blog](https://invented.example/blog).",
    )
    endpoint = ChatEndpoint(base_url=f"{upstream.base_url}/v1", model="writer", timeout=5)
    writer = ModelClient("supervisor", endpoint, chat_model(endpoint))
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream), http), writer, settings_with(SearchSettings(), tmp_path)
    )
    result = await specialist.run("best rust async runtime", CTX, {})
    assert not result.error
    links = re.findall(r"\]\(([^)]+)\)", result.content)
    assert links and set(links) <= {"https://tokio.rs/", "https://async.rs/"}
    assert "[2](https://async.rs/)" in result.content
    assert "invented.example" not in result.content and "fake.example" not in result.content
    assert "Sources:\n1. [Tokio - An asynchronous Rust runtime](https://tokio.rs/)" in result.content
    chat_request = next(r for r in upstream.requests if r.path == "/v1/chat/completions").json()
    assert "https://tokio.rs/" in chat_request["messages"][1]["content"]


async def test_chat_server_failure_falls_back_to_results(
    upstream: FakeUpstream, http: httpx.AsyncClient
) -> None:
    upstream.reply("GET", "/search", json=SEARXNG_OK)
    upstream.reply("POST", "/v1/chat/completions", status=500, json={"error": {"message": "boom"}})
    endpoint = ChatEndpoint(base_url=f"{upstream.base_url}/v1", model="writer", timeout=5)
    writer = ModelClient("supervisor", endpoint, chat_model(endpoint))
    specialist = SearchSpecialist(
        SearxngSearch(searxng_settings(upstream), http), writer, Settings(_env_file=None)
    )  # type: ignore[call-arg]
    result = await specialist.run("q", CTX, {})
    assert not result.error
    assert (
        "HTTP 500" in result.content
        and "[Tokio - An asynchronous Rust runtime](https://tokio.rs/)" in result.content
    )


@pytest.mark.llm
async def test_real_local_model_answer_cites_only_result_urls(
    local_llm: LocalLLMSettings, upstream: FakeUpstream, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """SmolLM2-135M on llama.cpp writes the answer: whatever it writes, links are real result URLs."""
    upstream.reply("GET", "/search", json=SEARXNG_OK)
    settings = Settings(
        local_llm=local_llm, search=searxng_settings(upstream), data_dir=tmp_path, _env_file=None
    )  # type: ignore[call-arg]
    writer = ModelClients.from_settings(settings).supervisor
    assert writer is not None
    specialist = SearchSpecialist(SearxngSearch(settings.search, http), writer, settings)
    result = await specialist.run("Which async runtime for Rust is most used?", CTX, {})
    assert not result.error, result.content
    urls = re.findall(r"\]\(([^)]+)\)", result.content) + re.findall(r"https?://[^\s)\]]+", result.content)
    allowed = {"https://tokio.rs/", "https://async.rs/"}
    assert urls and set(urls) <= allowed, result.content


# --- availability --------------------------------------------------------------------------------


def _deps(settings: Settings, http: httpx.AsyncClient) -> Services:
    return Services(settings=settings, http=http)


async def test_unavailable_without_key_or_searxng(http: httpx.AsyncClient) -> None:
    assert SPEC.build(_deps(Settings(_env_file=None), http)) is None  # type: ignore[call-arg]
    searxng_without_url = Settings(search=SearchSettings(backend="searxng"), _env_file=None)  # type: ignore[call-arg]
    assert SPEC.build(_deps(searxng_without_url, http)) is None
    assert SPEC.asks_for.search("search the web for the latest rust release")
    assert "ENSEMBLE_SEARCH__API_KEY" in SPEC.enable_hint and "SEARXNG" in SPEC.enable_hint.upper()


async def test_built_from_settings(http: httpx.AsyncClient) -> None:
    tavily = SPEC.build(_deps(Settings(search=SearchSettings(api_key=SecretStr("k")), _env_file=None), http))  # type: ignore[call-arg]
    assert isinstance(tavily, SearchSpecialist) and isinstance(tavily.backend, TavilySearch)
    assert SPEC.aclose is not None
    await SPEC.aclose(tavily)
    searx = SPEC.build(
        _deps(
            Settings(search=SearchSettings(backend="searxng", base_url="http://searx:8080"), _env_file=None),
            http,
        )  # type: ignore[call-arg]
    )
    assert isinstance(searx, SearchSpecialist) and isinstance(searx.backend, SearxngSearch)
