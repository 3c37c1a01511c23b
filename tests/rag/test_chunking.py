"""Clean passages: sentence-aligned chunks with whole-sentence overlap, running headers/footers dropped."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

from rag.chunking import ChunkOptions, chunk_elements, drop_furniture, split_sentences
from rag.parsing import chunk_raw, parse_pdf_pages

WORDS = ("harbour", "ledger", "lantern", "orchard", "granite", "meadow", "copper", "signal", "winter", "garden",
         "quarry", "vessel", "timber", "canal", "beacon", "thistle", "market", "bridge", "weaver", "cellar")


def sentences(rng: random.Random, n: int, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        words = rng.sample(WORDS, 7)
        out.append(f"Sentence {i} says the {words[0]} of the {words[1]} met the {' '.join(words[2:])} again.")
    return out


def test_split_sentences_keeps_abbreviations_and_initials() -> None:
    text = "Mr. Smith met J. Doe in the U.S. office, e.g. on Monday. It rained!  Then they left? Yes."
    assert split_sentences(text) == [
        "Mr. Smith met J. Doe in the U.S. office, e.g. on Monday.",
        "It rained!",
        "Then they left?",
        "Yes.",
    ]


def test_passages_start_and_end_on_sentences_and_overlap_whole_sentences() -> None:
    rng = random.Random(3)
    body = sentences(rng, 120)
    paragraphs = [" ".join(body[i : i + 8]) for i in range(0, 120, 8)]
    elements = [("Title", "Chapter One", 1, None)] + [("NarrativeText", p, 1 + i // 4, None)
                                                      for i, p in enumerate(paragraphs)]
    chunks = chunk_elements(elements, ChunkOptions(max_characters=900, overlap=200, combine_under=100))
    assert len(chunks) > 5
    whole = set(body) | {"Chapter One"}
    for chunk in chunks:
        assert len(chunk.text) <= 900
        pieces = [s for part in chunk.text.split("\n\n") for s in split_sentences(part)]
        assert all(piece in whole for piece in pieces), chunk.text  # only whole sentences
        assert chunk.section == "Chapter One"
    for before, after in itertools.pairwise(chunks):
        first = split_sentences(after.text.split("\n\n")[0])[0]
        assert first in before.text  # the overlap is the previous passage's closing sentence(s)
    assert chunks[-1].page_end == 4 and chunks[0].page == 1


def test_a_sentence_longer_than_a_passage_is_cut_between_words() -> None:
    long = " ".join(f"word{i}" for i in range(400)) + "."
    chunks = chunk_elements([("NarrativeText", long, 1, None)], ChunkOptions(500, 100, 50))
    assert len(chunks) > 1
    for chunk in chunks:
        assert re.fullmatch(r"(word\d+ )*word\d+\.?", chunk.text), chunk.text[:80]


def test_running_headers_footers_and_page_numbers_are_furniture() -> None:
    elements = []
    bodies = [f"The {a} of the {b} is recorded here." for a, b in zip(WORDS[:8], WORDS[8:16], strict=True)]
    for page in range(1, 9):
        elements += [("UncategorizedText", f"report.pdf - page {page}", page, None),
                     ("NarrativeText", bodies[page - 1], page, None),
                     ("UncategorizedText", "Confidential draft of the harbour board", page, None),
                     ("UncategorizedText", str(page), page, None)]
    kept = drop_furniture(elements)
    assert [e[1] for e in kept] == bodies
    # a paragraph repeated at the bottom of every page is text, not a footer
    filler = ("The committee met in the spring and reviewed the general budget, the building plans and the "
              "schedule of the annual garden fair. Minutes were taken and approved without changes.")
    pages = [("Title", f"Part {n}", n, None) for n in range(1, 4)]
    repeated = [e for n in range(3) for e in (pages[n], ("NarrativeText", filler, n + 1, None))]
    assert drop_furniture(repeated) == repeated


def make_running_pdf(path: Path, pages: int) -> Path:
    from fpdf import FPDF

    class Report(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "", 8)
            self.cell(0, 6, "Harbour Board Annual Report 2025", new_x="LMARGIN", new_y="NEXT")
            self.ln(2)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 6, f"harbour-report.pdf - Page {self.page_no()} of {{nb}} - Internal use only",
                      align="C")

    pdf = Report()
    pdf.set_auto_page_break(True, 18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, "Chapter 1: The harbour", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for paragraph in running_pdf_paragraphs(pages):
        pdf.multi_cell(0, 5, " ".join(paragraph), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.output(str(path))
    return path


def running_pdf_paragraphs(pages: int) -> list[list[str]]:
    """The sentences of `make_running_pdf`'s body, five to a paragraph, each numbered."""
    rng = random.Random(7)
    return [sentences(rng, 5, start=5 * p) for p in range(pages * 4)]


def test_a_pdf_with_a_running_header_and_footer_has_none_of_it_in_any_passage(tmp_path: Path) -> None:
    path = make_running_pdf(tmp_path / "harbour-report.pdf", 12)
    from rag.parsing import pdf_page_count

    raw = parse_pdf_pages(str(path), path.name, 0, pdf_page_count(str(path), path.name, 100))
    assert max(page for _, _, page, _ in raw if page) >= 5  # the text really runs over several pages
    assert any("Internal use only" in text for _, text, _, _ in raw)  # the footer is in the text layer
    chunks = chunk_raw(raw, path.name, ChunkOptions(1500, 200, 200))
    assert chunks
    for chunk in chunks:
        assert "Internal use only" not in chunk.text and "Annual Report 2025" not in chunk.text, chunk.text
        assert not re.search(r"Page \d+ of", chunk.text)
        # every passage opens on a heading or a sentence, never mid-word
        assert chunk.text.startswith(("Chapter 1", "Sentence ")), chunk.text[:60]
