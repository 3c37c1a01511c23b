"""Memory specialist: what Ensemble remembers about the user, shown and erased on request (no model)."""

import re

from agents.specialists.base import SpecialistSpec
from agents.specialists.memory.specialist import build

SPEC = SpecialistSpec(
    name="memory",
    title="Memory",
    description="Shows, adds and erases what Ensemble remembers about the user across chats: "
    "'what do you remember about me?', 'remember that …', 'forget …', 'forget everything'.",
    enable_hint="set ENSEMBLE_MEMORY__ENABLED=true (it is on by default; if it is, the startup log "
    "says why the memory store could not open)",
    # Routes directly (no model): commands at the start of a message, or plain questions about memory;
    # "don't forget that the list is sorted" or "how much memory does your GPU have" stay with the model.
    asks_for=re.compile(
        r"^\s*(?:(?:please|ok(?:ay)?|hey|now|so|can you|could you|would you)[\s,]+)*"
        r"(?:remember\s+that\b|forget\s+(?:everything|all\b|that\b|about\b|my\b)"
        r"|(?:delete|erase|clear|wipe)\s+(?:all\s+(?:of\s+)?)?(?:my|your)\s+memor)"
        r"|\bwhat\b.{0,40}\byou\b.{0,20}\b(?:remember|know)\b.{0,20}\babout\s+me\b"
        r"|\b(?:show|list|see|view)\b.{0,15}\bmy\s+memor(?:y|ies)\b",
        re.I | re.S,
    ),
    build=build,
    command="/memory",
    routes_directly=True,
)
