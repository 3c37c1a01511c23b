"""Web-search clients: Tavily (through `tavily-python`) and a self-hosted SearxNG (its JSON API).

Both return the same `WebResult`s and raise `SearchError` with a message meant for the chat user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from tavily import AsyncTavilyClient
from tavily import errors as tavily

from core.errors import EnsembleError, describe_server_error
from core.settings import SearchSettings

# Tavily advises queries under 400 characters; longer ones are cut there.
MAX_QUERY_CHARS = 400


class SearchError(EnsembleError):
    """A search that failed, worded for the chat user."""


@dataclass(frozen=True)
class WebResult:
    """One web result: what the step shows and what the answer may cite."""

    title: str
    url: str
    snippet: str
    published: str | None = None


class WebSearch(Protocol):
    """A search backend."""

    name: str

    async def search(self, query: str) -> list[WebResult]:
        """The top results for `query`; raises `SearchError` on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections this backend owns."""
        ...


def _query(text: str) -> str:
    text = " ".join(text.split())
    return text[:MAX_QUERY_CHARS]


def _hits(items: Any, *, limit: int, what: str, snippet_key: str = "content") -> list[WebResult]:
    """Results with a title and an http(s) URL, in the server's order; malformed replies raise."""
    if not isinstance(items, list):
        raise SearchError(f"{what} sent a reply that Ensemble could not read (no `results` list).")
    hits: list[WebResult] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        title = item.get("title")
        snippet = item.get(snippet_key)
        published = item.get("publishedDate") or item.get("published_date")
        hits.append(
            WebResult(
                title=" ".join(title.split()) if isinstance(title, str) and title.strip() else url,
                url=url,
                snippet=" ".join(snippet.split()) if isinstance(snippet, str) else "",
                published=published if isinstance(published, str) else None,
            )
        )
        if len(hits) >= limit:
            break
    return hits


class TavilySearch:
    """Tavily's `/search` through tavily-python's `AsyncTavilyClient` (its own connection pool).

    The shared HTTP client is not handed to tavily-python, because it would write Tavily's
    `Authorization` header and base URL onto that client for every other caller.
    """

    name = "Tavily"

    def __init__(self, settings: SearchSettings) -> None:
        self._settings = settings
        self._client = AsyncTavilyClient(
            api_key=settings.api_key.get_secret_value(),
            api_base_url=settings.tavily_base_url.rstrip("/"),
            client_source="ensemble",
        )

    async def search(self, query: str) -> list[WebResult]:
        s = self._settings
        what = f"Tavily web search ({s.tavily_base_url})"
        try:
            reply = await self._client.search(
                _query(query),
                search_depth=s.search_depth,
                time_range=s.time_range,
                max_results=s.max_results,
                include_answer=False,
                include_raw_content=False,
                include_images=False,
                timeout=s.timeout,
            )
        except tavily.InvalidAPIKeyError as exc:
            raise SearchError(
                "Tavily rejected the API key (HTTP 401). Check ENSEMBLE_SEARCH__API_KEY."
            ) from exc
        except tavily.UsageLimitExceededError as exc:
            raise SearchError(
                "Tavily's rate or usage limit is reached (HTTP 429). Try again later, "
                "or raise the plan's limit." + _detail(exc)
            ) from exc
        except tavily.ForbiddenError as exc:
            raise SearchError("Tavily refused the request (HTTP 403)." + _detail(exc)) from exc
        except tavily.BadRequestError as exc:
            raise SearchError("Tavily did not accept the search (HTTP 400)." + _detail(exc)) from exc
        except tavily.TimeoutError as exc:
            raise SearchError(
                describe_server_error(TimeoutError(), what=what, timeout=s.timeout) or str(exc)
            ) from exc
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise SearchError(describe_server_error(exc, what=what) or str(exc)) from exc
        if not isinstance(reply, dict):
            raise SearchError(f"{what} sent a reply that Ensemble could not read.")
        return _hits(reply.get("results"), limit=s.max_results, what=what)

    async def aclose(self) -> None:
        await self._client.close()


class SearxngSearch:
    """A SearxNG instance's JSON API: `GET {base_url}/search?q=...&format=json`."""

    name = "SearxNG"

    def __init__(self, settings: SearchSettings, http: httpx.AsyncClient) -> None:
        if settings.base_url is None:
            raise ValueError("SearxNG needs a base URL")
        self._settings = settings
        self._base_url = settings.base_url
        self._http = http

    async def search(self, query: str) -> list[WebResult]:
        s = self._settings
        what = f"SearxNG ({self._base_url})"
        params = {"q": _query(query), "format": "json", "pageno": "1", "categories": "general"}
        if s.time_range is not None:
            params["time_range"] = s.time_range
        try:
            response = await self._http.get(
                f"{self._base_url}/search",
                params=params,
                headers={"Accept": "application/json"},
                timeout=s.timeout,
            )
            if response.status_code == 403:
                raise SearchError(
                    f"{what} refused JSON output (HTTP 403). "
                    "Enable `json` under `search.formats` in its settings.yml."
                )
            if response.status_code == 429:
                raise SearchError(
                    f"{what} is rate-limiting Ensemble (HTTP 429). Try again later, or exempt "
                    "Ensemble in its limiter settings."
                )
            if response.status_code == 401:
                raise SearchError(f"{what} asks for credentials (HTTP 401) that Ensemble does not have.")
            response.raise_for_status()
            reply = response.json()
        except SearchError:
            raise
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise SearchError(
                describe_server_error(exc, what=what, timeout=s.timeout) or f"{what} failed: {exc}"
            ) from exc
        if not isinstance(reply, dict):
            raise SearchError(f"{what} sent a reply that Ensemble could not read.")
        return _hits(reply.get("results"), limit=s.max_results, what=what)

    async def aclose(self) -> None:
        """The shared HTTP client belongs to the app; nothing to close here."""


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f" Tavily said: {text[:200]}" if text else ""


def web_search(settings: SearchSettings, http: httpx.AsyncClient) -> WebSearch | None:
    """The backend chosen by `settings.backend`, or None when it is not configured."""
    if not settings.configured:
        return None
    if settings.backend == "searxng":
        return SearxngSearch(settings, http)
    return TavilySearch(settings)
