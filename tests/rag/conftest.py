"""Fixtures for the documents tests: real parser processes, the real local embedder (loaded once per
session), real Milvus Lite files, documents generated here, and a local TEI server (aiohttp on 127.0.0.1)
that answers TEI's documented shapes and validates every request body against TEI's OpenAPI spec."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from core.settings import EmbeddingSettings, RagSettings, Settings, UploadSettings
from rag.embeddings import Embedder, LocalEmbedder
from rag.pool import ParserPool
from rag.service import DocumentService
from rag.store import MilvusStore
from tests.conftest import free_port

# ------------------------------------------------------------------------------------------ stack


@pytest.fixture(scope="session")
async def rag_stack() -> AsyncIterator[tuple[LocalEmbedder, ParserPool]]:
    """The local embedder and two warm parser processes, loaded side by side once per session."""
    from rag.runtime import configure_libraries

    configure_libraries()
    pool = ParserPool(2)
    embedder, *_ = await asyncio.gather(LocalEmbedder.load(), *pool.warm())
    yield embedder, pool
    pool.close()
    await embedder.aclose()


@pytest.fixture(scope="session")
def local_embedder(rag_stack: tuple[LocalEmbedder, ParserPool]) -> LocalEmbedder:
    return rag_stack[0]


@pytest.fixture(scope="session")
def parser_pool(rag_stack: tuple[LocalEmbedder, ParserPool]) -> ParserPool:
    return rag_stack[1]


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed (to prove dedupe skips it)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.texts = 0

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += len(texts)
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        return None


def rag_settings(tmp_path: Path, **rag: Any) -> Settings:
    uploads = rag.pop("uploads", UploadSettings())
    return Settings(data_dir=tmp_path, rag=RagSettings(**rag), uploads=uploads,  # type: ignore[call-arg]
                    embeddings=EmbeddingSettings(), _env_file=None)


ServiceFactory = Callable[..., Awaitable[DocumentService]]


@pytest.fixture
async def make_service(tmp_path: Path, local_embedder: LocalEmbedder,
                       parser_pool: ParserPool) -> AsyncIterator[ServiceFactory]:
    """Build a service on a fresh Milvus Lite file with the shared embedder and parser processes."""
    stores: list[MilvusStore] = []

    async def factory(**rag: Any) -> DocumentService:
        settings = rag_settings(tmp_path, **rag)
        embedder = CountingEmbedder(local_embedder)
        store = await asyncio.to_thread(MilvusStore.open, str(tmp_path / f"milvus{len(stores)}.db"),
                                        settings.rag.collection, embedder.model_name, embedder.dimension)
        stores.append(store)
        return DocumentService(settings, store, embedder, pool=parser_pool)

    yield factory
    for store in stores:
        await asyncio.to_thread(store.close)


# -------------------------------------------------------------------------------------- documents

WORDS = (
    "harbour", "ledger", "morning", "river", "lantern", "orchard", "granite", "meadow", "copper",
    "signal", "winter", "garden", "quarry", "vessel", "timber", "canal", "beacon", "thistle",
    "mill", "market", "bridge", "weaver", "cellar", "tide", "chapel", "furnace",
)


def prose(seed: int, sentences: int = 6) -> str:
    """Plain English-looking sentences (several per paragraph, like real prose)."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
        out.append(f"The {' '.join(words[:3])} was {' '.join(words[3:])}.")
    return " ".join(out)


def make_pdf(path: Path, pages: Sequence[tuple[str, Sequence[str]]]) -> Path:
    """A text PDF: one page per (heading, paragraphs)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(True, 15)
    for heading, paragraphs in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))
    return path


def make_docx(path: Path, pages: Sequence[tuple[str, Sequence[str]]]) -> Path:
    """A DOCX with a heading per page, page breaks between pages, and the rendered-page-break marks
    that Word writes when it saves a laid-out document (unstructured numbers pages from those)."""
    import docx
    from docx.oxml import OxmlElement

    document = docx.Document()
    for i, (heading, paragraphs) in enumerate(pages):
        if i:
            document.add_page_break()
        title = document.add_heading(heading, level=1)
        if i:
            run = OxmlElement("w:r")
            run.append(OxmlElement("w:lastRenderedPageBreak"))
            title._p.insert(1 if title._p.pPr is not None else 0, run)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def make_pptx(path: Path, slides: Sequence[tuple[str, str]]) -> Path:
    from pptx import Presentation

    deck = Presentation()
    for title, body in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(str(path))
    return path


def make_xlsx(path: Path, sheets: dict[str, list[list[str]]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(str(path))
    return path


def make_eml(path: Path, subject: str, body: str) -> Path:
    message = EmailMessage()
    message["From"] = "ada@example.org"
    message["To"] = "grace@example.org"
    message["Subject"] = subject
    message["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    message.set_content(body)
    path.write_bytes(bytes(message))
    return path


def make_zip_bomb_docx(path: Path, unpacked_bytes: int) -> Path:
    """A DOCX-shaped zip whose document part inflates to `unpacked_bytes` of zeros."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(unpacked_bytes // len(block)):
                member.write(block)
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A PDF with a drawing and no text layer, like a scan."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_fill_color(120, 120, 120)
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 6, prose(7))
    pdf.set_encryption(owner_password="owner-secret", user_password="user-secret")
    pdf.output(str(path))
    return path


# ------------------------------------------------------------------------------------------- TEI


def tei_validator(specs_dir: Path, schema: str) -> Draft202012Validator:
    spec = json.loads((specs_dir / "tei-openapi.json").read_text())
    return Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": spec["components"]})


def fake_vector(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255.0 + 0.01 for b in digest[:dim]]
    norm = sum(x * x for x in raw) ** 0.5
    return [x / norm for x in raw]


@dataclass
class FakeTEI:
    """TEI's routes with the documented shapes; bodies validated against TEI's OpenAPI schemas."""

    specs_dir: Path
    base_url: str = ""
    max_client_batch_size: int = 4
    dim: int = 8
    model_id: str = "BAAI/bge-small-en-v1.5"
    fail_next: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers) to send first
    bodies: dict[str, list[Any]] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)
    shuffle_openai: bool = True
    rerank_scores: Callable[[str, list[str]], list[float]] | None = None

    def validate(self, schema: str, body: Any) -> None:
        errors = [e.message for e in tei_validator(self.specs_dir, schema).iter_errors(body)]
        self.invalid.extend(f"{schema}: {message}" for message in errors)

    def _failure(self) -> web.Response | None:
        if self.fail_next:
            status, headers = self.fail_next.pop(0)
            return web.json_response({"error": "overloaded", "error_type": "overloaded"}, status=status,
                                     headers=headers)
        return None

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "model_id": self.model_id, "model_sha": None, "model_dtype": "float16",
            "model_type": {"embedding": {"pooling": "cls"}}, "max_concurrent_requests": 512,
            "max_input_length": 512, "max_batch_tokens": 16384, "max_batch_requests": None,
            "max_client_batch_size": self.max_client_batch_size, "auto_truncate": False,
            "tokenization_workers": 2, "version": "1.9.3", "served_model_name": self.model_id})

    async def embed(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.setdefault("/embed", []).append(body)
        self.validate("EmbedRequest", body)
        failure = self._failure()
        if failure is not None:
            return failure
        inputs = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        if len(inputs) > self.max_client_batch_size:
            return web.json_response({"error": "batch size 5 > maximum allowed batch size 4",
                                      "error_type": "validation"}, status=413)
        return web.json_response([fake_vector(text, self.dim) for text in inputs])

    async def openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.setdefault("/v1/embeddings", []).append(body)
        self.validate("OpenAICompatRequest", body)
        failure = self._failure()
        if failure is not None:
            return failure
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [x * 3 for x in fake_vector(t, self.dim)]}
                for i, t in enumerate(inputs)]
        if self.shuffle_openai:
            data.reverse()
        return web.json_response({"object": "list", "data": data, "model": self.model_id,
                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    async def rerank(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.setdefault("/rerank", []).append(body)
        self.validate("RerankRequest", body)
        failure = self._failure()
        if failure is not None:
            return failure
        scorer = self.rerank_scores or (lambda q, texts: [float(len(t)) for t in texts])
        scores = scorer(body["query"], body["texts"])
        ranks = sorted(({"index": i, "score": s} for i, s in enumerate(scores)), key=lambda r: -r["score"])
        return web.json_response(ranks)


@pytest.fixture
async def fake_tei(specs_dir: Path) -> AsyncIterator[FakeTEI]:
    tei = FakeTEI(specs_dir)
    app = web.Application()
    app.router.add_get("/info", tei.info)
    app.router.add_post("/embed", tei.embed)
    app.router.add_post("/v1/embeddings", tei.openai)
    app.router.add_post("/rerank", tei.rerank)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    tei.base_url = f"http://127.0.0.1:{port}"
    yield tei
    await runner.cleanup()


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "uploads"
    path.mkdir()
    yield path
