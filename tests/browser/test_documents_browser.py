"""A user uploads a PDF and a DOCX in the chat, asks, and gets an answer citing the right file and page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, attach, last_answer, login, send
from tests.rag.conftest import make_docx, make_pdf

pytestmark = [pytest.mark.browser, pytest.mark.llm]

FILLER = ("The committee met in the spring and reviewed the general budget, the building plans and the "
          "schedule of the annual garden fair. Minutes were taken and approved without changes.")


def test_upload_pdf_and_docx_then_answer_cites_file_and_page(
    app: RunningApp, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    pdf = make_pdf(tmp_path / "harbour-report.pdf", [
        ("Introduction", [FILLER]),
        ("Lighthouse", ["The old lighthouse on Gull Point was repainted cobalt blue in 1987 by the harbour "
                        "board, after a public vote.", FILLER]),
        ("Closing", [FILLER]),
    ])
    docx = make_docx(tmp_path / "ferry-notes.docx", [
        ("Schedule", [FILLER]),
        ("Ferry", ["The night ferry Marisol leaves the north pier at 23:40 every Friday.", FILLER]),
    ])
    page = login(browser, app.url, "alice")
    attach(page, [pdf, docx])
    send(page, "/docs What colour was the lighthouse on Gull Point painted?", timeout=240)
    answer = last_answer(page)
    body = page.locator("body").inner_text()
    page.screenshot(path=str(artifacts_dir / "browser-documents.png"), full_page=True)

    # both files were read, each as a visible step with its progress
    assert "Reading harbour-report.pdf" in body and "Reading ferry-notes.docx" in body
    # the answer cites the PDF's second page
    assert re.search(r"\[\d+\] harbour-report\.pdf, pp?\. ?(\d+–)?2\b", answer, re.I), answer
    # the cited passage opens from the answer (a side element named after the citation)
    page.get_by_text(re.compile(r"\[\d+\] harbour-report\.pdf", re.I)).last.click()
    page.wait_for_timeout(800)
    assert "cobalt blue" in page.locator("body").inner_text()
    page.screenshot(path=str(artifacts_dir / "browser-documents-source.png"), full_page=True)

    send(page, "/docs When does the night ferry leave?", timeout=240)
    assert re.search(r"\[\d+\] ferry-notes\.docx, pp?\. ?(\d+–)?2\b", last_answer(page), re.I), last_answer(page)
    page.context.close()


@pytest.mark.timeout(900)  # the app's start and a 135M model's answer, on a shared 2-core machine
def test_a_cited_passage_opens_at_the_start_of_a_sentence(
    app: RunningApp, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    from rag.chunking import split_sentences
    from tests.rag.test_chunking import make_running_pdf, running_pdf_paragraphs

    pdf = make_running_pdf(tmp_path / "harbour-report.pdf", 6)
    written = {s for paragraph in running_pdf_paragraphs(6) for s in paragraph}
    page = login(browser, app.url, "bob")
    attach(page, [pdf])
    send(page, "/docs What did sentence 40 say about the harbour?", timeout=240)
    link = page.get_by_text(re.compile(r"\[\d+\] harbour-report\.pdf", re.I)).last
    link.wait_for(timeout=60_000)  # the Sources line comes with the finished answer
    assert re.search(r"\[\d+\] harbour-report\.pdf", last_answer(page), re.I), last_answer(page)
    link.click()
    panel = page.locator("#side-view-content")
    panel.wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    text = panel.inner_text().strip()
    page.screenshot(path=str(artifacts_dir / "browser-documents-passage.png"), full_page=True)
    first = split_sentences(text.split("\n")[0])[0]
    assert first in written or first.startswith("Chapter 1"), text[:200]  # a whole sentence (or the heading)
    assert "Internal use only" not in text and "Annual Report 2025" not in text  # no running footer/header
    page.context.close()
