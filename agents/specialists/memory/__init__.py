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
    asks_for=re.compile(
        r"\bwhat\b.{0,40}\byou\b.{0,20}\b(remember|know)\b.{0,20}\babout me\b"
        r"|\bforget\b.{0,30}\b(everything|all|my|that|about)\b"
        r"|\bremember\s+that\b|\b(my|your)\s+memor(y|ies)\b",
        re.I | re.S,
    ),
    build=build,
    command="/memory",
    routes_directly=True,
)
