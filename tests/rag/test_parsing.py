"""The PDF layout reader and the on-demand POS tagging give the same results unstructured would."""

from __future__ import annotations

from pathlib import Path

from rag.pdf import open_pdf, page_paragraphs
from tests.rag.conftest import make_pdf, prose

SAMPLES = [
    "Chapter 4: The Harbour Report",
    "INTRODUCTION",
    "ITEM 1A. RISK FACTORS",
    "The committee met on Tuesday.",
    "The committee met on Tuesday. It approved the budget for the new pavilion.",
    "Revenue grew. Costs fell. Margins improved across all three regions this year.",
    "Figure 3",
    "12",
    "Contact: ada@example.org",
    "Springfield, IL 62704",
    "• first bullet point",
    "1. Prepare the site",
    "Results and discussion of the winter survey",
    "THE BOAT LEFT AT DAWN. IT RETURNED AT DUSK WITH NO CATCH.",
    "lanterns, granite, copper",
    prose(1),
    prose(2, sentences=2),
]


def test_on_demand_tagging_classifies_like_the_full_pipeline() -> None:
    import unstructured.nlp.tokenize as tokenize
    from unstructured.partition.text import element_from_text

    from rag import parsing

    def clear() -> None:
        for cached in (tokenize._process_cached, tokenize.word_tokenize, tokenize.pos_tag,
                       tokenize._tokenize_for_cache):
            cached.cache_clear()

    parsing.worker_init()
    lazy = tokenize._run_pipeline
    try:
        tokenize._run_pipeline = lambda text: tokenize._get_nlp()(text)  # tag everything
        clear()
        full = [element_from_text(text).category for text in SAMPLES]
        tokenize._run_pipeline = lazy
        clear()
        fast = [element_from_text(text).category for text in SAMPLES]
    finally:
        tokenize._run_pipeline = lazy
        clear()
    assert fast == full
    assert full[0] == "Title" and full[4] == "NarrativeText" and full[10] == "ListItem"


def test_pdf_paragraphs_follow_the_layout(tmp_path: Path) -> None:
    first = ("The survey team walked the northern ridge at dawn and counted every nesting pair of "
             "kittiwakes along the cliffs, a task that took most of the morning and part of the afternoon.")
    second = "A second paragraph starts here. It is short."
    pdf_path = make_pdf(tmp_path / "layout.pdf", [("Field Notes", [first, second])])
    pdf = open_pdf(pdf_path, "layout.pdf")
    try:
        paragraphs = page_paragraphs(pdf, 0)
    finally:
        pdf.close()
    assert [p.text for p in paragraphs] == ["Field Notes", first, second]
    assert [p.large for p in paragraphs] == [True, False, False]


def test_formats_parse_without_numba(tmp_path: Path) -> None:
    """unstructured declares numba (and llvmlite, 208 MB) for PDF image layout, which Ensemble never runs;
    scripts/dev leaves them out. Every format Ensemble reads is parsed in a process where numba cannot load."""
    from tests.rag.conftest import make_docx, make_eml, make_pptx, make_xlsx

    make_pdf(tmp_path / "a.pdf", [("Report", [prose(1)])])
    make_docx(tmp_path / "a.docx", [("Report", [prose(2)])])
    make_pptx(tmp_path / "a.pptx", [("Plan", prose(3))])
    make_xlsx(tmp_path / "a.xlsx", {"Sheet": [["item", "count"], ["lanterns", "12"]]})
    make_eml(tmp_path / "a.eml", "Boiler", "The boiler inspection moved to March.")
    (tmp_path / "a.md").write_text(f"# Notes\n\n{prose(4)}\n")
    (tmp_path / "a.html").write_text(f"<html><body><h1>Museum</h1><p>{prose(5)}</p></body></html>")
    (tmp_path / "a.txt").write_text(prose(6))
    (tmp_path / "a.csv").write_text("item,count\nlanterns,12\nteapots,77\n")
    script = f"""
import sys
sys.modules["numba"] = None  # importing numba raises ImportError, as when it is not installed
from pathlib import Path
from rag.parsing import ChunkOptions, parse_file, parse_pdf_pages, worker_init
worker_init()
folder = Path({str(tmp_path)!r})
options = ChunkOptions(max_characters=1000, overlap=100, combine_under=200)
assert parse_pdf_pages(str(folder / "a.pdf"), "a.pdf", 0, 1)
for kind, suffix in [("docx", "docx"), ("pptx", "pptx"), ("xlsx", "xlsx"), ("eml", "eml"), ("md", "md"),
                     ("html", "html"), ("text", "txt"), ("csv", "csv")]:
    parsed = parse_file(str(folder / f"a.{{suffix}}"), f"a.{{suffix}}", kind, options)
    assert parsed.chunks, kind
print("ok")
"""
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
