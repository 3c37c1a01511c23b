"""The memory specialist: shows, adds and erases the user's long-term memories, without a model.

The user is always `TurnContext.user_id` (set by the app); nothing in the request can name another user.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from agents.specialists.base import Services, SpecialistResult, TurnContext
from agents.specialists.memory.prompts import (
    MEMORY_BAD_FACT,
    MEMORY_FAILED,
    MEMORY_FORGOT_ALL,
    MEMORY_FORGOT_ALL_EMPTY,
    MEMORY_FORGOT_NONE,
    MEMORY_FORGOT_ONE,
    MEMORY_FORGOT_SOME,
    MEMORY_HOW_TO,
    MEMORY_LIST_EMPTY,
    MEMORY_LIST_HEADER,
    MEMORY_NO_SUCH_ID,
    MEMORY_REMEMBERED,
    MEMORY_UPDATED,
)
from memory.ids import InvalidUserId
from memory.records import Fact, Memory
from memory.service import MemoryService

log = logging.getLogger(__name__)

Action = Literal["list", "forget_all", "forget_id", "forget_matching", "remember"]


@dataclass(frozen=True)
class Intent:
    action: Action
    argument: str = ""


_POLITE = re.compile(
    r"^(?:(?:ok(?:ay)?|hey|so|now|please|kindly|can you|could you|would you|will you"
    r"|i want you to|i'd like you to|i would like you to)\b[\s,]*)*",
    re.I,
)
_TRAILING = re.compile(r"[\s,]*(?:please|thanks|thank you)?[\s.!?]*$", re.I)
_MEMORIES = r"(?:memor(?:y|ies)|facts?|data|notes?)"
_FORGET_ALL = re.compile(
    r"^(?:forget|erase|delete|wipe|clear|remove|reset|drop|purge)"
    r"(?:\s+(?:about\s+)?(?:everything|all|it\s+all|all\s+of\s+(?:it|them)"
    rf"|(?:all\s+(?:of\s+)?)?(?:my|your|the|our)\s+(?:\w+\s+)?{_MEMORIES}|all\s+{_MEMORIES}))?"
    r"(?:\s+(?:that\s+)?(?:you\s+(?:know|have|remember|stored|keep|saved?)|about\s+me|of\s+me|on\s+me))*$",
    re.I,
)
_HEX_ID = re.compile(r"^`?([0-9a-f]{6,32})`?$", re.I)
_FORGET_WHAT = re.compile(
    r"^(?:forget|erase|delete|remove|drop|stop\s+remembering|do\s*n[o']?t\s+remember|unlearn)\s+"
    rf"(?:(?:the|my|that)\s+{_MEMORIES}\s+(?:about|that|of|with|id)\s+|{_MEMORIES}\s+|that\s+|about\s+)?(?P<what>.+)$",
    re.I | re.S,
)
_REMEMBER = re.compile(
    r"^(?:remember|memori[sz]e|note|keep\s+in\s+mind|don'?t\s+forget|add)\s*:?\s+"
    r"(?:that\s+|this:?\s+|to\s+memory:?\s+)?"
    r"(?P<what>.+)$",
    re.I | re.S,
)
_LIST = re.compile(
    r"^(?:list|show|display|see|view|ls)?$"
    r"|\bwhat\b.{0,40}\b(?:you|ensemble)\b.{0,20}\b(?:remember|know|recall|stored?|saved?)\b"
    rf"|\b(?:list|show|display|see|view|print)\b.{{0,30}}\b{_MEMORIES}\b"
    r"|\bwhat do you have (?:on|about) me\b|\bmy memor(?:y|ies)\b",
    re.I | re.S,
)


def parse_intent(request: str) -> Intent:
    """What the user wants done with their memories, from their words alone (the default is to list).

    `/memory forget …` arrives here as "forget …": the registry took the command off."""
    text = " ".join(request.split())
    text = _TRAILING.sub("", _POLITE.sub("", text)).strip()
    if _FORGET_ALL.match(text):
        return Intent("forget_all")
    if match := _FORGET_WHAT.match(text):
        what = match.group("what").strip().strip("\"'“”‘’`").strip()
        if id_match := _HEX_ID.match(what):
            return Intent("forget_id", id_match.group(1).lower())
        if what:
            return Intent("forget_matching", what)
    if (match := _REMEMBER.match(text)) and not _LIST.search(text):
        return Intent("remember", match.group("what").strip())
    return Intent("list")


_I_VERB = re.compile(r"^(?:i\s+|i'(?=m\b))(?P<verb>[\w']+)", re.I)
_MY = re.compile(r"^my\s+", re.I)
_THIRD_PERSON = {
    "am": "is", "'m": "is", "m": "is", "have": "has", "do": "does", "don't": "doesn't", "go": "goes",
    "was": "was", "can": "can", "could": "could", "will": "will", "would": "would", "should": "should",
    "must": "must", "may": "may", "might": "might", "shall": "shall", "can't": "can't", "won't": "won't",
}


def _third_person(verb: str) -> str:
    lower = verb.lower()
    if lower in _THIRD_PERSON:
        return _THIRD_PERSON[lower]
    if lower.endswith("ed"):
        return verb
    if len(lower) > 2 and lower.endswith("y") and lower[-2] not in "aeiou":
        return verb[:-1] + "ies"
    if lower.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    return verb + "s"


def as_fact_text(words: str) -> str:
    """The user's words in the third person (`I prefer tabs` → `The user prefers tabs.`), as memories read."""
    text = words.strip().lstrip(":").strip().rstrip(".!") + "."
    if match := _I_VERB.match(text):
        return f"The user {_third_person(match.group('verb'))}{text[match.end():]}"
    if _MY.match(text):
        return _MY.sub("The user's ", text, count=1)
    return text[0].upper() + text[1:]


def format_list(memories: list[Memory]) -> str:
    if not memories:
        return f"{MEMORY_LIST_EMPTY}\n\n{MEMORY_HOW_TO}"
    lines = [MEMORY_LIST_HEADER.format(count=len(memories))]
    lines += [f"- {m.text} `{m.short_id}`" for m in memories]
    return "\n".join(lines) + f"\n\n{MEMORY_HOW_TO}"


class MemorySpecialist:
    """Lists, adds and erases the asking user's memories (the user id comes only from `ctx`)."""

    name = "memory"

    def __init__(self, service: MemoryService) -> None:
        self._service = service

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        intent = parse_intent(request)
        try:
            return await self._do(intent, ctx.user_id)
        except InvalidUserId as exc:
            log.warning("memory specialist: refused a turn with an invalid user id (%s)", exc)
            return SpecialistResult(MEMORY_FAILED.format(reason="this session has no valid user"), error=True)
        except Exception as exc:
            log.exception("memory specialist: %s failed", intent.action)
            return SpecialistResult(MEMORY_FAILED.format(reason=type(exc).__name__), error=True)

    async def _do(self, intent: Intent, user_id: str) -> SpecialistResult:
        service = self._service
        if intent.action == "forget_all":
            count = await service.forget_all(user_id)
            reply = MEMORY_FORGOT_ALL.format(count=count) if count else MEMORY_FORGOT_ALL_EMPTY
            return SpecialistResult(reply)
        if intent.action == "forget_id":
            forgotten = await service.forget(user_id, intent.argument)
            if forgotten is None:
                return SpecialistResult(MEMORY_NO_SUCH_ID.format(ref=intent.argument))
            return SpecialistResult(MEMORY_FORGOT_ONE.format(text=forgotten.text))
        if intent.action == "forget_matching":
            removed = await service.forget_matching(user_id, intent.argument)
            if not removed:
                remaining = await service.list_memories(user_id)
                none = MEMORY_FORGOT_NONE.format(what=intent.argument)
                return SpecialistResult(f"{none}\n\n{format_list(remaining)}")
            if len(removed) == 1:
                return SpecialistResult(MEMORY_FORGOT_ONE.format(text=removed[0].text))
            lines = [MEMORY_FORGOT_SOME.format(count=len(removed))] + [f"- {m.text}" for m in removed]
            return SpecialistResult("\n".join(lines))
        if intent.action == "remember":
            try:
                fact = Fact(text=as_fact_text(intent.argument))
            except ValidationError:
                return SpecialistResult(MEMORY_BAD_FACT)
            (outcome,) = await service.remember(user_id, [fact])
            if outcome.previous is not None and outcome.previous.text != outcome.memory.text:
                return SpecialistResult(MEMORY_UPDATED.format(previous=outcome.previous.text, text=fact.text))
            return SpecialistResult(MEMORY_REMEMBERED.format(text=fact.text))
        return SpecialistResult(format_list(await service.list_memories(user_id)))


def build(services: Services) -> MemorySpecialist | None:
    """Over the memory service startup opened, if any (no model: it does what the words say)."""
    return None if services.memory is None else MemorySpecialist(services.memory)
