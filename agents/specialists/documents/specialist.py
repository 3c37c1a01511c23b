"""The documents specialist: hybrid retrieval over the user's files, an answer with [n] citations.

Each cited passage comes back as an `Artifact(kind="source")` carrying file, page and the quoted text;
markers that point at no passage are removed. Listing and deleting documents need no model: `/docs`
(an empty request), `/docs list`, `/docs delete <file name or id>` reach `run` as "", "list", "delete …".
"""

from __future__ import annotations

import logging
import re
import secrets

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig

from agents.specialists.base import Artifact, Services, SpecialistResult, TurnContext
from agents.specialists.documents.prompts import DOCUMENTS_SYSTEM_PROMPT, DOCUMENTS_USER_PROMPT, SOURCE_TEMPLATE
from core.errors import EnsembleError, describe_server_error
from core.models import SUPERVISOR, ModelClient
from core.settings import Settings
from rag import DocumentService, SearchHit

MODEL = SUPERVISOR  # answers are written by the supervisor's model

log = logging.getLogger(__name__)

ALL_DOCUMENTS = re.compile(
    r"\b(all|every|any)\s+(of\s+)?(my|the)\s+(documents|files|uploads|pdfs)\b|\bacross\s+(all\s+)?(my\s+)?"
    r"(documents|files|chats)\b|\bother\s+chats?\b",
    re.I,
)
LIST = re.compile(r"^\s*($|(list|show)\b.*\b(documents?|files?|uploads?)\b|(list|show)\s*$)", re.I)
DELETE = re.compile(r"^\s*(delete|remove)\s+(the\s+)?(document|file)?\s*[“\"']?(?P<name>[^“”\"']+?)[”\"']?\s*$", re.I)
MARKER_GROUP = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})+)\]")
MARKER = re.compile(r"\[(\d{1,3})\]")


class DocumentsSpecialist:
    """Answers from retrieved passages of the asking user's documents only."""

    name = "documents"

    def __init__(self, service: DocumentService, client: ModelClient, settings: Settings) -> None:
        self._service = service
        self._client = client
        self._settings = settings
        self._system = settings.prompt("documents.system", client.model_name, DOCUMENTS_SYSTEM_PROMPT)
        self._user = settings.prompt("documents.user", client.model_name, DOCUMENTS_USER_PROMPT)

    async def run(self, request: str, ctx: TurnContext, config: RunnableConfig) -> SpecialistResult:
        try:
            if LIST.match(request):
                return await self._list(ctx)
            deletion = DELETE.match(request)
            if deletion:
                return await self._delete(ctx, deletion.group("name").strip())
            question = request.strip()
            everywhere = ALL_DOCUMENTS.search(question) is not None
            hits = await self._service.search(question, ctx.user_id, None if everywhere else ctx.thread_id)
        except EnsembleError as exc:
            return SpecialistResult(content=str(exc), error=True)
        except Exception as exc:
            log.exception("document search failed")
            message = describe_server_error(exc, what="the document store") or (
                f"Searching your documents failed ({type(exc).__name__}).")
            return SpecialistResult(content=message, error=True)
        if not hits:
            return await self._nothing_found(ctx, everywhere)
        messages = build_messages(self._system, self._user, question, hits, secrets.token_hex(6))
        try:
            reply = await self._client.llm.ainvoke(messages, config=config)
        except Exception as exc:
            reason = describe_server_error(exc, what=self._client.where, timeout=self._client.endpoint.timeout)
            if reason is None:
                raise
            return SpecialistResult(content=reason, error=True)
        # a weak model may echo the passage fences: they are ours, never part of an answer
        text = FENCE_TAG.sub("", reply.text).strip()
        text, artifacts = cite(text, hits)
        if not artifacts and text:
            # The model cited nothing (small models often don't): name the passage the answer draws on most.
            text, artifacts = cite(f"{text} [{closest_passage(question, text, hits)}]", hits)
        return SpecialistResult(content=text, artifacts=artifacts)

    async def _nothing_found(self, ctx: TurnContext, everywhere: bool) -> SpecialistResult:
        if everywhere:
            return SpecialistResult(content="You have no uploaded documents yet. Attach a file to a message to "
                                            "add it.")
        elsewhere = await self._service.list_documents(ctx.user_id)
        if elsewhere:
            return SpecialistResult(content="No document was uploaded in this chat. To search the "
                                            f"{len(elsewhere)} document(s) from your other chats, ask again "
                                            "and say “in all my documents”.")
        return SpecialistResult(content="No document was uploaded in this chat. Attach a file (PDF, DOCX, "
                                        "PPTX, XLSX, CSV, HTML, Markdown, TXT or EML) and ask again.")

    async def _list(self, ctx: TurnContext) -> SpecialistResult:
        docs = await self._service.list_documents(ctx.user_id)
        if not docs:
            return SpecialistResult(content="You have no uploaded documents.")
        lines = [f"You have {len(docs)} document(s):"]
        for doc in docs:
            where = "this chat" if doc.chat_id == ctx.thread_id else "another chat"
            pages = f"{doc.pages} pages, " if doc.pages else ""
            lines.append(f"- {doc.file_name} ({pages}{doc.chunks} passages, {where}, "
                         f"{doc.uploaded_at:%Y-%m-%d %H:%M} UTC) — id `{doc.doc_id}`")
        lines.append("Delete one with `/docs delete <file name or id>`.")
        return SpecialistResult(content="\n".join(lines))

    async def _delete(self, ctx: TurnContext, name: str) -> SpecialistResult:
        docs = await self._service.list_documents(ctx.user_id)
        targets = [d for d in docs if d.doc_id == name.lower()] or [
            d for d in docs if d.file_name.lower() == name.lower()]
        if not targets:
            return SpecialistResult(content=f"You have no document named “{name}”. `/docs` lists them.")
        for doc in targets:
            await self._service.delete_document(ctx.user_id, doc.doc_id)
        names = ", ".join(f"“{d.file_name}”" for d in targets)
        return SpecialistResult(content=f"Deleted {names} ({len(targets)} document(s)) and all their passages.")


def build_messages(system: str, user: str, question: str, hits: list[SearchHit], nonce: str) -> list[BaseMessage]:
    """The system rules and one user message with the passages fenced by `nonce` tags, then the question."""
    sources = "\n\n".join(
        SOURCE_TEMPLATE.format(nonce=nonce, n=n, file=_attr(h.file_name), location=_attr(h.location),
                               text=h.text.replace(nonce, "······"))
        for n, h in enumerate(hits, start=1)
    )
    return [SystemMessage(system), HumanMessage(user.format(nonce=nonce, sources=sources, question=question))]


def cite(text: str, hits: list[SearchHit]) -> tuple[str, tuple[Artifact, ...]]:
    """Keep the [n] markers that name a passage (dropping others) and make a source artifact for each."""
    text = MARKER_GROUP.sub(lambda m: "".join(f"[{n.strip()}]" for n in m.group(1).split(",")), text)
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if 1 <= n <= len(hits):
            if n not in cited:
                cited.append(n)
            return match.group(0)
        return ""

    text = MARKER.sub(keep, text)
    return text, tuple(source_artifact(n, hits[n - 1]) for n in sorted(cited))


WORD = re.compile(r"[a-z0-9]{4,}")
FENCE_TAG = re.compile(r"</?source-[0-9a-f]+\b[^>]*>")


def closest_passage(question: str, answer: str, hits: list[SearchHit]) -> int:
    """The 1-based number of the passage sharing most words with the question, then with the answer
    (a weak model's answer may echo every passage, so the question decides first; ties: best ranked)."""
    asked, said = set(WORD.findall(question.lower())), set(WORD.findall(answer.lower()))

    def key(i: int) -> tuple[int, int, int]:
        words = set(WORD.findall(hits[i].text.lower()))
        return len(asked & words), len(said & words), -i

    return max(range(len(hits)), key=key) + 1


def source_artifact(n: int, hit: SearchHit) -> Artifact:
    location = f", {hit.location}" if hit.location else ""
    return Artifact(
        kind="source",
        name=f"[{n}] {hit.file_name}{location}",
        content=hit.text,
        mime="text/plain",
        meta={"marker": n, "file": hit.file_name, "page": hit.page, "page_end": hit.page_end,
              "section": hit.section, "doc_id": hit.doc_id, "chunk_index": hit.chunk_index, "score": hit.score},
    )


def _attr(value: str) -> str:
    return value.replace('"', "'").replace("\n", " ")


def build(services: Services) -> DocumentsSpecialist | None:
    """Over the documents feature startup opened, answering with the supervisor's model."""
    client = services.model(MODEL)
    if services.documents is None or client is None:
        return None
    return DocumentsSpecialist(services.documents, client, services.settings)
