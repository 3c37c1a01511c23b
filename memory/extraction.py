"""Fact extraction: a finished turn in, validated facts about the user out (never an exception)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from core.settings import StructuredOutput
from memory.prompts import EXTRACT_SYSTEM_PROMPT, EXTRACT_USER_PROMPT
from memory.records import CATEGORIES, FACT_TEXT_MAX, KEY_PATTERN, Fact, FactList

log = logging.getLogger(__name__)

# A message that may tell something about its author: first-person words or a request to remember.
PERSONAL = re.compile(
    r"\b(i|i'm|im|i've|i'd|i'll|me|my|mine|myself|we|we're|our|ours|us|remember|forget|call me)\b",
    re.IGNORECASE,
)
# "give me …", "tell me …", "show me …": asking for something says nothing about the asker.
REQUEST_ME = re.compile(r"\b(give|tell|show|send|help|let|get|find|bring|teach|explain to)\s+me\b", re.IGNORECASE)
MAX_TRANSCRIPT_CHARS = 6000
MAX_MESSAGE_CHARS = 1500

FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "minLength": 3, "maxLength": FACT_TEXT_MAX},
                    "key": {"anyOf": [{"type": "string", "pattern": KEY_PATTERN}, {"type": "null"}]},
                    "category": {"type": "string", "enum": list(CATEGORIES)},
                },
                "required": ["text", "key", "category"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}


def response_format(mode: StructuredOutput) -> dict[str, Any]:
    """The `response_format` that makes a server of this kind answer with FACTS_SCHEMA-shaped JSON.

    llama.cpp constrains its grammar with `{"type": "json_object", "schema": …}`; OpenAI-style
    servers (TabbyAPI, vLLM, SGLang, OpenAI; also those configured for `tools`) take `json_schema`.
    """
    if mode == "json_object":
        return {"type": "json_object", "schema": FACTS_SCHEMA}
    return {"type": "json_schema", "json_schema": {"name": "facts", "schema": FACTS_SCHEMA}}


def speaks_of_the_user(text: str) -> bool:
    """Whether a user's message may state something about them (a cheap test before an extraction call)."""
    return PERSONAL.search(REQUEST_ME.sub(" ", text)) is not None


def transcript(messages: Sequence[BaseMessage]) -> str:
    """The user's and the assistant's words of the turn(s), newest last, clipped to a budget."""
    lines: list[str] = []
    for message in messages:
        if isinstance(message, HumanMessage):
            who = "User"
        elif isinstance(message, AIMessage):
            who = "Assistant"
        else:
            continue
        text = message.text.strip()
        if text:
            lines.append(f"{who}: {text[:MAX_MESSAGE_CHARS]}")
    out: list[str] = []
    used = 0
    for line in reversed(lines):
        if used + len(line) > MAX_TRANSCRIPT_CHARS:
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(reversed(out))


def parse_facts(raw: str) -> list[Fact]:
    """Facts from a model reply; malformed JSON or a wrong shape gives none. Bad single facts are dropped."""
    text = raw.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        log.info("memory: the extraction reply was not JSON; no facts taken: %.200r", raw)
        return []
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        log.info("memory: the extraction reply had no facts list; no facts taken")
        return []
    facts: list[Fact] = []
    for entry in data["facts"][:10]:
        try:
            facts.append(Fact.model_validate(entry))
        except ValidationError:
            log.info("memory: dropped a malformed fact from the extraction reply")
    try:
        return FactList(facts=_unique(facts)).facts
    except ValidationError:
        return []


def _unique(facts: list[Fact]) -> list[Fact]:
    seen: set[str] = set()
    out = []
    for fact in facts:
        marker = fact.text.casefold()
        if marker not in seen:
            seen.add(marker)
            out.append(fact)
    return out


async def extract_facts(
    llm: BaseChatModel,
    messages: Sequence[BaseMessage],
    *,
    mode: StructuredOutput = "json_object",
    system_prompt: str = EXTRACT_SYSTEM_PROMPT,
) -> list[Fact]:
    """Facts worth keeping about the user in `messages`, by grammar-constrained JSON from `llm`.

    Only model errors and malformed replies are absorbed (logged, no facts); cancellation passes.
    Runs with no callbacks, so its tokens never stream into the chat that triggered it.
    """
    chat = transcript(messages)
    if "User:" not in chat:
        return []
    prompt = [SystemMessage(system_prompt), HumanMessage(EXTRACT_USER_PROMPT.format(transcript=chat))]
    bound = llm.bind(response_format=response_format(mode))
    try:
        reply = await bound.ainvoke(prompt, config={"callbacks": [], "run_name": "memory_extract"})
    except Exception as exc:
        log.warning("memory: fact extraction failed (%s: %s); no facts taken", type(exc).__name__, exc)
        return []
    return parse_facts(reply.text if isinstance(reply, BaseMessage) else str(reply))
