"""The one list of specialists, and the registry the supervisor routes through.

Adding a specialist: its package under `agents/specialists/`, and its SPEC in `all_specs()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agents.specialists.base import FileKind, Services, Specialist, SpecialistSpec
from agents.specialists.code import SPEC as CODE
from agents.specialists.data import SPEC as DATA
from agents.specialists.documents import SPEC as DOCUMENTS
from agents.specialists.image import SPEC as IMAGE
from agents.specialists.mcp_tools import operator_specs
from agents.specialists.memory import SPEC as MEMORY
from agents.specialists.search import SPEC as SEARCH
from agents.specialists.vision import SPEC as VISION
from core.models import SUPERVISOR, ModelRole
from core.settings import Settings


def all_specs() -> tuple[SpecialistSpec, ...]:
    """Every specialist Ensemble knows, configured or not."""
    return (CODE, SEARCH, VISION, IMAGE, DOCUMENTS, DATA, MEMORY)


async def configured_specs(settings: Settings) -> tuple[SpecialistSpec, ...]:
    """Every specialist of this deployment: the built-in ones, then one per MCP server the operator
    configured (made at startup: each lists its server's tools for the router)."""
    built_in = all_specs()
    return (*built_in, *await operator_specs(settings, taken=[spec.name for spec in built_in]))


def model_roles(specs: Iterable[SpecialistSpec]) -> tuple[ModelRole, ...]:
    """The chat models a deployment needs: the supervisor's, then each role a specialist names, once."""
    roles = {SUPERVISOR.name: SUPERVISOR}
    for spec in specs:
        if spec.model_role is not None:
            roles.setdefault(spec.model_role.name, spec.model_role)
    return tuple(roles.values())


@dataclass(frozen=True)
class Entry:
    spec: SpecialistSpec
    specialist: Specialist


@dataclass(frozen=True)
class Registry:
    """Specialists built for this deployment, and those that are switched off (with how to enable them).

    The specs come from `all_specs()`, or from the caller: specs made at startup serve as well.
    """

    available: dict[str, Entry]
    unavailable: dict[str, SpecialistSpec]

    @classmethod
    def build(cls, services: Services, specs: Sequence[SpecialistSpec] | None = None) -> Registry:
        available: dict[str, Entry] = {}
        unavailable: dict[str, SpecialistSpec] = {}
        for spec in all_specs() if specs is None else specs:
            specialist = spec.build(services)
            if specialist is None:
                unavailable[spec.name] = spec
            else:
                available[spec.name] = Entry(spec, specialist)
        return cls(available, unavailable)

    def specs(self) -> list[SpecialistSpec]:
        """Every spec, available ones first."""
        return [entry.spec for entry in self.available.values()] + list(self.unavailable.values())

    def get(self, name: str, extra: Sequence[Entry] = ()) -> Entry | None:
        """The built specialist `name`: the deployment's, or one of `extra` (a user's own, for their turn)."""
        return self.available.get(name) or next((e for e in extra if e.spec.name == name), None)

    def by_command(self, text: str, extra: Sequence[Entry] = ()) -> tuple[SpecialistSpec, str] | None:
        """A leading slash command (`/code write a parser`) names a specialist directly (also one of `extra`)."""
        match = re.match(r"^\s*(/\w+)\b\s*(.*)$", text, re.S)
        if not match:
            return None
        for spec in [*self.specs(), *(e.spec for e in extra)]:
            if spec.command == match.group(1).lower():
                return spec, match.group(2).strip()
        return None

    def routed_directly(self, text: str) -> list[SpecialistSpec]:
        """Available specialists whose unmistakable phrases this message uses (no model needed)."""
        return [e.spec for e in self.available.values() if e.spec.routes_directly and e.spec.asks_for.search(text)]

    def unavailable_asked_for(self, text: str) -> list[SpecialistSpec]:
        """Switched-off specialists that this message plainly asks for."""
        return [spec for spec in self.unavailable.values() if spec.asks_for.search(text)]

    def reader_of(self, kind: FileKind) -> SpecialistSpec | None:
        """The specialist that reads uploaded files of `kind` (enabled or not), if one does."""
        return next((spec for spec in self.specs() if spec.uploads and kind in spec.uploads.kinds), None)

    async def forget_chat(self, thread_id: str) -> None:
        """Let each specialist remove what it kept for a deleted chat."""
        for entry in self.available.values():
            if entry.spec.forget_chat is not None:
                await entry.spec.forget_chat(entry.specialist, thread_id)

    async def aclose(self) -> None:
        for entry in self.available.values():
            if entry.spec.aclose is not None:
                await entry.spec.aclose(entry.specialist)
