"""Ingestion for real: generated documents, unstructured in parser processes, the local embedder,
Milvus Lite files; citations metadata (file, page, section), progress, dedupe and cancellation."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from rag.store import key_of, scope_filter
from rag.types import IngestProgress, LocalFile
from tests.rag.conftest import (
    ServiceFactory,
    make_docx,
    make_eml,
    make_pdf,
    make_pptx,
    make_xlsx,
    prose,
)


def pages_with(marker_page: int, marker: str, count: int = 5, seed: int = 0) -> list[tuple[str, list[str]]]:
    pages = []
    for n in range(1, count + 1):
        paragraphs = [prose(seed * 100 + n * 10 + i) for i in range(3)]
        if n == marker_page:
            paragraphs.insert(1, marker)
        pages.append((f"Chapter {n}: Topic {n}", paragraphs))
    return pages


MARKER_PDF = ("The zeppelin quartermaster logged exactly forty-two brass chronometers in the vault. "
              "Each chronometer was wound every Thursday by the night porter.")
MARKER_DOCX = ("The saffron cooperative exported nineteen crates of violet pigment to the lighthouse. "
               "The pigment was mixed with linseed oil before shipping.")


async def test_pdf_and_docx_keep_file_page_and_section(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    pdf = make_pdf(corpus_dir / "ledger.pdf", pages_with(3, MARKER_PDF, count=6))
    docx = make_docx(corpus_dir / "pigments.docx", pages_with(2, MARKER_DOCX, count=4, seed=5))
    events: list[IngestProgress] = []

    results = await service.ingest([LocalFile("ledger.pdf", pdf), LocalFile("pigments.docx", docx)], "alice",
                                   "chat-1", progress_cb=events.append)

    assert [r.outcome for r in results] == ["ingested", "ingested"], [r.message for r in results]
    assert results[0].pages == 6 and results[0].chunks >= 6
    assert results[1].pages == 4
    assert "ledger.pdf" in results[0].message and "6 pages" in results[0].message

    hit = (await service.search("how many brass chronometers did the zeppelin quartermaster log", "alice",
                                "chat-1"))[0]
    assert (hit.file_name, hit.page, hit.section) == ("ledger.pdf", 3, "Chapter 3: Topic 3")
    assert "forty-two brass chronometers" in hit.text
    assert hit.element_type == "NarrativeText"

    hit = (await service.search("violet pigment crates exported to the lighthouse", "alice", "chat-1"))[0]
    assert (hit.file_name, hit.page, hit.section) == ("pigments.docx", 2, "Chapter 2: Topic 2")
    assert hit.location == "p. 2"

    pdf_events = [e for e in events if e.file_name == "ledger.pdf"]
    assert next(e.stage for e in pdf_events) == "checking"
    assert pdf_events[-1].stage == "done" and pdf_events[-1].chunks_done == results[0].chunks
    parsing = [e.pages_done for e in pdf_events if e.stage == "parsing"]
    assert parsing == sorted(parsing) and parsing[-1] == 6
    assert any(e.stage == "embedding" and e.chunks_done > 0 for e in pdf_events)

    rows = await asyncio.to_thread(service.store.query, scope_filter(key_of("alice"), doc_id=results[0].doc_id),
                                   ["file_name", "page", "section", "element_type", "content_hash", "uploaded_at",
                                    "owner", "chat_id", "chunk_index"])
    assert len(rows) == results[0].chunks
    assert {r["owner"] for r in rows} == {"alice"} and {r["chat_id"] for r in rows} == {"chat-1"}
    assert all(len(r["content_hash"]) == 64 and r["uploaded_at"] > 0 and r["page"] >= 1 for r in rows)
    assert sorted(r["chunk_index"] for r in rows) == list(range(len(rows)))


async def test_every_supported_format_is_parsed_and_found(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    files = {
        "deck.pptx": make_pptx(corpus_dir / "deck.pptx", [
            ("Quarterly plan", prose(1)),
            ("Otter survey", "Volunteers counted thirty-one river otters near the weir in April.")]),
        "stock.xlsx": make_xlsx(corpus_dir / "stock.xlsx", {
            "Summary": [["item", "count"], ["lanterns", "12"]],
            "Warehouse": [["item", "count"], ["porcelain teapots", "77"], ["walnut easels", "5"]]}),
        "notes.md": corpus_dir / "notes.md",
        "page.html": corpus_dir / "page.html",
        "plain.txt": corpus_dir / "plain.txt",
        "mail.eml": make_eml(corpus_dir / "mail.eml", "Boiler inspection",
                             "Hello Grace,\n\nThe boiler inspection is moved to the ninth of March because "
                             "the inspector broke his ankle.\n\nAda"),
        "table.csv": corpus_dir / "table.csv",
    }
    (corpus_dir / "notes.md").write_text(f"# Garden notes\n\n{prose(3)}\n\n## Beekeeping\n\nThe apiary hosts "
                                         "eleven hives of Carniolan honey bees behind the greenhouse.\n")
    (corpus_dir / "page.html").write_text("<html><body><h1>Museum</h1><p>The museum keeps a stuffed dodo in "
                                          "the east wing beside the telescope.</p></body></html>")
    (corpus_dir / "plain.txt").write_text(f"{prose(4)}\n\nThe lighthouse keeper owns a tortoise named "
                                          "Archibald who is ninety years old.\n")
    with (corpus_dir / "table.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["city", "mascot"], ["Lisbon", "albatross"], ["Quito", "condor"]])

    results = await service.ingest([LocalFile(name, path) for name, path in files.items()], "bob", "chat-2")

    assert [r.outcome for r in results] == ["ingested"] * len(files), [r.message for r in results]
    expectations = [
        ("river otters counted near the weir", "deck.pptx", 2),
        ("porcelain teapots in the warehouse", "stock.xlsx", 2),
        ("Carniolan honey bee hives", "notes.md", None),
        ("stuffed dodo in the museum", "page.html", None),
        ("tortoise named Archibald", "plain.txt", None),
        ("why was the boiler inspection moved", "mail.eml", None),
        ("which city has the condor mascot", "table.csv", None),
    ]
    for query, file_name, page in expectations:
        hit = (await service.search(query, "bob", "chat-2", k=1))[0]
        assert hit.file_name == file_name, (query, hit)
        assert hit.page == page, (query, hit)
    beekeeping = (await service.search("Carniolan honey bee hives", "bob", "chat-2", k=1))[0]
    assert beekeeping.section == "Beekeeping"
    sheet = (await service.search("porcelain teapots in the warehouse", "bob", "chat-2", k=1))[0]
    assert sheet.section == "Warehouse" and sheet.element_type == "Table"


async def test_reupload_is_detected_by_hash_and_not_embedded_again(make_service: ServiceFactory,
                                                                     corpus_dir: Path) -> None:
    service = await make_service()
    pdf = make_pdf(corpus_dir / "report.pdf", pages_with(2, MARKER_PDF, count=3))
    first = (await service.ingest([LocalFile("report.pdf", pdf)], "carol", "chat-a"))[0]
    embedded = service.embedder.texts  # type: ignore[attr-defined]
    total = await asyncio.to_thread(service.store.count, scope_filter(key_of("carol")))

    again = (await service.ingest([LocalFile("report (1).pdf", pdf)], "carol", "chat-a"))[0]
    assert again.outcome == "duplicate" and again.doc_id == first.doc_id
    assert "already in this chat" in again.message and "report.pdf" in again.message
    assert await asyncio.to_thread(service.store.count, scope_filter(key_of("carol"))) == total

    elsewhere = (await service.ingest([LocalFile("report.pdf", pdf)], "carol", "chat-b"))[0]
    assert elsewhere.outcome == "duplicate" and elsewhere.doc_id != first.doc_id
    assert elsewhere.chunks == first.chunks
    assert service.embedder.texts == embedded  # type: ignore[attr-defined]  # nothing re-embedded
    hit = (await service.search("brass chronometers", "carol", "chat-b"))[0]
    assert (hit.file_name, hit.page) == ("report.pdf", 2)
    assert len(await service.list_documents("carol")) == 2

    # Another owner uploading the same bytes gets their own copy (no cross-owner sharing).
    other = (await service.ingest([LocalFile("report.pdf", pdf)], "dave", "chat-a"))[0]
    assert other.outcome == "ingested"


async def test_cancel_stops_the_upload_and_stores_nothing(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service(pdf_batch_pages=2)
    big = make_pdf(corpus_dir / "big.pdf", [(f"Part {n}", [prose(n * 7 + i) for i in range(4)]) for n in range(60)])
    small = corpus_dir / "small.txt"
    small.write_text("The weather station recorded hail on the first of June.")
    cancel = asyncio.Event()

    def on_progress(progress: IngestProgress) -> None:
        if progress.stage == "parsing" and progress.pages_done >= 4:
            cancel.set()

    results = await service.ingest([LocalFile("big.pdf", big), LocalFile("small.txt", small)], "erin", "c",
                                   progress_cb=on_progress, cancel=cancel)

    assert [r.outcome for r in results] == ["cancelled", "cancelled"]
    assert "cancelled" in results[0].message
    assert await asyncio.to_thread(service.store.count, scope_filter(key_of("erin"))) == 0
    after = await service.ingest([LocalFile("small.txt", small)], "erin", "c")
    assert after[0].outcome == "ingested"


async def test_delete_document_and_chat_remove_chunks(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    one, two, three = (corpus_dir / f"{n}.txt" for n in ("one", "two", "three"))
    one.write_text("The granary cat is called Pudding.")
    two.write_text("The bell tower clock runs four minutes fast.")
    three.write_text("The canal lock opens at dawn for barges.")
    r1, r2 = await service.ingest([LocalFile("one.txt", one), LocalFile("two.txt", two)], "fay", "chat-x")
    (r3,) = await service.ingest([LocalFile("three.txt", three)], "fay", "chat-y")

    assert await service.delete_document("fay", r1.doc_id or "")
    assert not await service.delete_document("fay", r1.doc_id or "")  # already gone
    assert not await service.delete_document("fay", "not-a-doc-id")
    names = [d.file_name for d in await service.list_documents("fay")]
    assert sorted(names) == ["three.txt", "two.txt"]
    assert all(h.file_name != "one.txt" for h in await service.search("granary cat", "fay"))

    assert await service.delete_chat("fay", "chat-x") == 1
    assert [d.file_name for d in await service.list_documents("fay")] == ["three.txt"]
    assert await asyncio.to_thread(service.store.count, scope_filter(key_of("fay"))) == r3.chunks
    assert r2.doc_id is not None


async def test_has_documents_follows_uploads_and_deletions(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    note = corpus_dir / "note.txt"
    note.write_text("The ferry leaves at nine from the north pier.")
    assert not await service.has_documents("gil")
    assert not await service.has_documents("gil")  # remembered: the store is not asked again
    (result,) = await service.ingest([LocalFile("note.txt", note)], "gil", "chat-g")
    assert await service.has_documents("gil"), "an upload must show at once, not after the remembered answer expires"
    assert not await service.has_documents("hal")  # another user's documents are not theirs
    assert await service.delete_document("gil", result.doc_id or "")
    assert not await service.has_documents("gil")
