"""Readable messages for what goes wrong between Ensemble and its servers."""

from __future__ import annotations

import json

import httpx
import openai


class EnsembleError(Exception):
    """An error whose message is meant for the chat user, as is."""


class ServerDown(httpx.TransportError):
    """A request failed because its server is down, and the process that supervises it knows why.

    Raised by the embedded model server's transport (`core.local_llm`) in place of the bare connection
    error, so every caller still treats it as an outage while the chat shows the reason as is.
    """


def _server_down(exc: BaseException) -> ServerDown | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ServerDown):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_server_error(exc: BaseException, *, what: str, timeout: float | None = None) -> str | None:
    """One sentence for a user about `exc` raised while talking to `what`; None if not a server error."""
    if isinstance(exc, EnsembleError):
        return str(exc)
    down = _server_down(exc)
    if down is not None:
        return str(down)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        limit = f" within {timeout:g} s" if timeout else " in time"
        return f"{what} did not answer{limit}. It may be overloaded; try again in a moment."
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return f"Could not reach {what}. Is the server running and its URL right?"
    if isinstance(exc, openai.APIStatusError):
        return f"{what} answered with HTTP {exc.status_code}: {_short(exc.message)}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{what} answered with HTTP {exc.response.status_code}: {_short(exc.response.text)}"
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return f"{what} sent a reply that Ensemble could not read (malformed JSON)."
    return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
