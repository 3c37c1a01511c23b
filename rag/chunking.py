"""Passages that read as the document reads: sentence-aligned chunks, page furniture dropped.

Pure Python and fast (no NLP model): a run of elements (title, paragraph, list item, table, each with its
page) becomes passages that
- start and end on sentence or element boundaries, never mid-word; a sentence longer than a passage is
  cut between words;
- overlap by whole sentences (the last sentences of a passage, up to `overlap` characters, open the next
  one within the same section);
- start a new passage at each heading, which heads the passage it opens (`section` is the heading);
- may run across a page break (a sentence that continues on the next page stays whole): `page` and
  `page_end` are the first and last page the passage draws on.

`drop_furniture` removes running headers, footers and page numbers: text that recurs at the top or the
bottom of many pages of one document (digits ignored, so "page 3 of 40" matches "page 4 of 40").
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rag.types import Chunk

RawElement = tuple[str, str, int | None, str | None]  # category, text, page number, page (sheet) name

DROPPED = frozenset({"Header", "Footer", "PageBreak", "Image", "PageNumber"})
HEADING = frozenset({"Title"})
WHOLE = frozenset({"Table"})
FURNITURE_MAX_CHARS = 100  # kept whole where they fit; cut at line breaks where they do not

# A sentence ends at . ! ? … (with closing quotes/brackets) followed by space and a capital, digit,
# quote or bracket; the abbreviations below and single initials ("J. Smith") do not end one.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "etc", "vs", "cf", "al", "mr", "mrs", "ms", "dr", "prof", "st", "no", "nos", "sec",
    "secs", "art", "fig", "figs", "vol", "pp", "p", "inc", "ltd", "co", "corp", "jr", "sr", "u.s", "u.k",
    "approx", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec", "para", "ch",
})
_LAST_WORD = re.compile(r"(\S+)[.]$")
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_ROMAN_OR_NUMBER = re.compile(r"^(page\s+)?([ivxlc]+|\d+)(\s*(/|of)\s*\d+)?$", re.I)
_PAGE_LABEL = re.compile(r"(^|\s)(-\s+)?page\s+\d+(\s*(/|of)\s*\d+)?(\s|$)", re.I)  # "report.pdf - page 2"


@dataclass(frozen=True)
class ChunkOptions:
    max_characters: int  # a passage is at most this long (a table or one overlong sentence is cut)
    overlap: int  # whole sentences, up to this many characters, repeated at the start of the next passage
    combine_under: int  # a section shorter than this joins the next one instead of standing alone

    @property
    def target(self) -> int:
        """Close a passage at the end of a paragraph once it is this long."""
        return max(self.max_characters * 3 // 4, 1)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, whitespace-normalised; abbreviations and initials do not end a sentence."""
    text = _SPACE.sub(" ", text).strip()
    if not text:
        return []
    out: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        piece = text[start : match.start()].rstrip()
        if _ends_in_abbreviation(piece):
            continue
        out.append(text[start : match.start()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _ends_in_abbreviation(piece: str) -> bool:
    match = _LAST_WORD.search(piece)
    if match is None:
        return False
    word = match.group(1).lstrip("(\"'“‘[").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _split_long(sentence: str, limit: int) -> list[str]:
    """A sentence longer than `limit` cut between words (a single overlong word is cut where it must be)."""
    pieces: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:limit])
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _furniture_key(text: str) -> str:
    return _DIGITS.sub("#", _SPACE.sub(" ", text).strip().lower())


def drop_furniture(elements: Sequence[RawElement], *, zone: int = 2, min_pages: int = 2) -> list[RawElement]:
    """`elements` without running headers/footers and page numbers.

    Per page, the first and last `zone` elements are candidates; one whose text (digits ignored) is at
    the top or bottom of at least `min_pages` pages and of a fifth of all pages is furniture (a heading
    only when its very text recurs: "Chapter 3" on page 3 is no page number). A page
    number or label ("7", "vii", "Page 7 of 40", "report.pdf - page 7") in those places is dropped on
    any page, a one-page document's too.
    """
    by_page: dict[int, list[int]] = collections.defaultdict(list)
    for i, (_, _, page, _) in enumerate(elements):
        if page is not None:
            by_page[page].append(i)
    if not by_page:
        return list(elements)
    edges: dict[int, str] = {}  # element index -> its furniture key, for elements at a page's edges
    seen: collections.Counter[str] = collections.Counter()
    for indices in by_page.values():
        candidates = set(indices[:zone]) | set(indices[-zone:])
        keys = set()
        for i in candidates:
            text = elements[i][1]
            if len(text) > FURNITURE_MAX_CHARS:  # a running header is a line, not a paragraph
                continue
            # a heading's digits count ("Chapter 3" on page 3 is no running header); others' do not
            key = text.strip().lower() if elements[i][0] in HEADING else _furniture_key(text)
            edges[i] = key
            keys.add(key)
        seen.update(keys)
    needed = max(min_pages, len(by_page) // 5)
    furniture = {key for key, count in seen.items() if count >= needed}
    out = []
    for i, element in enumerate(elements):
        edge = edges.get(i)
        text = element[1].strip()
        if edge is not None and (
            edge in furniture or _ROMAN_OR_NUMBER.match(text) or (len(text) <= 80 and _PAGE_LABEL.search(text))
        ):
            continue
        out.append(element)
    return out


@dataclass
class _Open:
    """The passage being built."""

    parts: list[str]  # paragraphs (joined by blank lines); the last one grows sentence by sentence
    sentences: list[str]  # every sentence in it, in order (for the overlap)
    pages: list[int]
    kinds: collections.Counter[str]
    length: int = 0
    has_body: bool = False  # more than a heading and overlap
    carried: bool = False  # it holds only the previous passage's closing sentences
    section: str = ""  # the heading in force where it starts

    @classmethod
    def empty(cls) -> _Open:
        return cls([], [], [], collections.Counter())


class _Builder:
    def __init__(self, options: ChunkOptions) -> None:
        self.options = options
        self.out: list[Chunk] = []
        self.section = ""
        self.current = _Open.empty()
        self.new_paragraph = True

    # -- passage boundaries -------------------------------------------------------------------

    def flush(self, *, overlap: bool) -> None:
        current = self.current
        if current.has_body:
            text = "\n\n".join(p for p in current.parts if p).strip()
            kinds = current.kinds
            self.out.append(
                Chunk(
                    text=text,
                    index=len(self.out),
                    page=current.pages[0] if current.pages else None,
                    page_end=max(current.pages) if current.pages else None,
                    section=current.section[:500],
                    element_type=kinds.most_common(1)[0][0] if kinds else "NarrativeText",
                )
            )
        carried: list[str] = []
        if overlap and current.has_body and self.options.overlap > 0:
            size = 0
            for sentence in reversed(current.sentences[1:]):  # never the whole passage again
                if size + len(sentence) > self.options.overlap:
                    break
                carried.insert(0, sentence)
                size += len(sentence) + 1
        self.current = _Open.empty()
        self.new_paragraph = True
        if carried and current.pages:
            self.current.section = current.section
            self.current.parts.append(" ".join(carried))
            self.current.sentences.extend(carried)
            self.current.pages.append(current.pages[-1])
            self.current.length = sum(len(s) + 1 for s in carried)
            self.current.carried = True
            self.new_paragraph = True

    # -- adding text --------------------------------------------------------------------------

    def heading(self, text: str, page: int | None) -> None:
        text = _SPACE.sub(" ", text).strip()
        if self.current.has_body and self.current.length >= self.options.combine_under:
            self.flush(overlap=False)
        elif self.current.has_body:
            self.new_paragraph = True  # a short section runs on into the next one
        elif self.current.carried:
            self.current = _Open.empty()  # overlap never crosses into a new section
        self.section = text
        if not self.current.has_body:
            self.current.section = text  # consecutive headings: the last one names the section
        self._add_piece(text, page, "Title", body=False)
        self.new_paragraph = True

    def paragraph(self, text: str, page: int | None, kind: str, *, lines: bool = False) -> None:
        limit = self.options.max_characters
        pieces = [ln.strip() for ln in text.splitlines() if ln.strip()] if lines else split_sentences(text)
        self.new_paragraph = True
        for sentence in pieces:
            for piece in _split_long(sentence, limit) if len(sentence) > limit else (sentence,):
                if self.current.length + len(piece) + 2 > limit and self.current.has_body:
                    self.flush(overlap=not lines)
                self._add_piece(piece, page, kind, body=True, joiner="\n" if lines else " ")
        if self.current.length >= self.options.target:
            self.flush(overlap=True)

    def _add_piece(self, piece: str, page: int | None, kind: str, *, body: bool, joiner: str = " ") -> None:
        current = self.current
        if not current.parts:
            current.section = self.section
        if self.new_paragraph or not current.parts:
            current.parts.append(piece)
            self.new_paragraph = False
        else:
            current.parts[-1] = f"{current.parts[-1]}{joiner}{piece}"
        current.sentences.append(piece)
        current.length += len(piece) + 2
        if page is not None:
            current.pages.append(page)
        if body:
            current.has_body = True
            current.kinds[kind] += len(piece)


def chunk_elements(elements: Iterable[RawElement], options: ChunkOptions) -> tuple[Chunk, ...]:
    """Sentence-aligned passages of `elements` (already in reading order, furniture removed)."""
    builder = _Builder(options)
    sheet: str | None = None
    for category, text, page, page_name in elements:
        if category in DROPPED or not text or not text.strip():
            continue
        if page_name and page_name != sheet:  # a spreadsheet's sheet is a passage of its own
            sheet = page_name
            builder.flush(overlap=False)
            builder.heading(str(page_name), page)
        if category in HEADING:
            builder.heading(text, page)
        elif category in WHOLE:
            builder.paragraph(text, page, "Table", lines=True)
        else:
            builder.paragraph(text, page, category)
    builder.flush(overlap=False)
    return tuple(builder.out)
