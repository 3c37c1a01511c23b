"""PDF text layer with pypdfium2 (~30x faster than pdfminer), grouped into paragraphs by layout.

Each text run PDFium reports has a box; runs on one baseline form a line, and lines form a paragraph
until the font size changes, a gap opens, or a sentence ends on a short line. The paragraphs are then
classified by `unstructured` (see `rag.parsing`). Blocking: runs in a parser process.
"""

from __future__ import annotations

import itertools
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import DocumentRejected

SENTENCE_END = re.compile(r"[.!?:;…)\]\"”]$")
PAGE_NUMBER = re.compile(r"^(page\s+)?\d{1,4}(\s*(/|of)\s*\d{1,4})?$", re.I)


@dataclass(frozen=True)
class Line:
    left: float
    bottom: float
    right: float
    top: float
    text: str
    size: float  # font size of the line's first character (the box height depends on the glyphs)

    @property
    def height(self) -> float:
        return max(self.top - self.bottom, 0.1)


@dataclass(frozen=True)
class Paragraph:
    """A block of text on a page; `large` when its font is clearly bigger than the page's body text."""

    text: str
    large: bool


def open_pdf(path: str | Path, name: str) -> Any:
    """Open a PDF with PDFium, turning its failures into messages for the user."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        text = str(exc).lower()
        if "password" in text:
            raise DocumentRejected(
                f"“{name}” is password-protected; remove the password and upload it again."
            ) from exc
        raise DocumentRejected(
            f"“{name}” is a damaged PDF that could not be opened ({_reason(text)})."
        ) from exc


def _reason(text: str) -> str:
    match = re.search(r"pdfium:\s*([^)]*)", text)
    return match.group(1).strip() if match else "unreadable"


def page_paragraphs(pdf: Any, index: int) -> list[Paragraph]:
    """The paragraphs of page `index` (0-based) in content order."""
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            lines = _lines(textpage)
        finally:
            textpage.close()
    finally:
        page.close()
    return _paragraphs(lines)


def _lines(textpage: Any) -> list[Line]:
    import pypdfium2.raw as pdfium_c

    lines: list[Line] = []
    for i in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(i)
        text = textpage.get_text_bounded(left, bottom, right, top)
        text = " ".join(text.replace("\x02", "-").replace("\xad", "-").split())
        if not text:
            continue
        char = textpage.get_index(left + 0.5, (bottom + top) / 2, 2.0, 2.0)
        size = pdfium_c.FPDFText_GetFontSize(textpage.raw, char) if char is not None and char >= 0 else 0.0
        size = size if size > 0 else top - bottom
        if lines:
            last = lines[-1]
            same_baseline = abs(last.bottom - bottom) < 0.35 * min(last.height, top - bottom or 0.1)
            if same_baseline and left >= last.right - 1.0:
                lines[-1] = Line(last.left, min(last.bottom, bottom), right, max(last.top, top),
                                 f"{last.text} {text}", max(last.size, size))
                continue
        lines.append(Line(left, bottom, right, top, text, size))
    return lines


def _paragraphs(lines: list[Line]) -> list[Paragraph]:
    if not lines:
        return []
    weights = [(line.size, len(line.text)) for line in lines]
    body = statistics.median_high([size for size, n in weights for _ in range(min(n, 200))])
    right_edge = max(line.right for line in lines)
    short_line = right_edge - 0.25 * (right_edge - min(line.left for line in lines))
    paragraphs: list[Paragraph] = []
    current: list[Line] = [lines[0]]

    def flush() -> None:
        text = _join(current)
        if text and not PAGE_NUMBER.match(text):
            size = max(line.size for line in current)
            paragraphs.append(Paragraph(text=text, large=size > 1.1 * body))

    for prev, line in itertools.pairwise(lines):
        small = min(prev.height, line.height)
        gap = prev.bottom - line.top
        breaks = (
            max(prev.size, line.size) > 1.1 * min(prev.size, line.size)  # font size changes
            or gap > 0.8 * small  # a blank line's worth of space
            or line.top > prev.top + 0.5 * small  # moved up: new column or a float
            or (
                SENTENCE_END.search(prev.text) is not None
                and (prev.right < short_line or line.left > prev.left + small)
            )
        )
        if breaks:
            flush()
            current = []
        current.append(line)
    flush()
    return paragraphs


def _join(lines: list[Line]) -> str:
    out = ""
    for line in lines:
        text = line.text
        if out.endswith("-") and len(out) > 1 and out[-2].isalpha() and text[:1].islower():
            out = out[:-1] + text
        else:
            out = f"{out} {text}" if out else text
    return out.strip()
