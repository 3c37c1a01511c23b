"""Bad uploads get a clear message each while good files in the same upload still go in and nothing
stored earlier is lost; owners never see each other's chunks, whatever their ids look like."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path

import pytest

from core.settings import UploadSettings
from rag.store import MilvusStore, key_of, scope_filter
from rag.types import LocalFile
from tests.rag.conftest import (
    ServiceFactory,
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
    make_zip_bomb_docx,
    prose,
)


async def test_bad_files_fail_one_by_one_with_clear_messages(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service(uploads=UploadSettings(max_bytes=2 * 1024 * 1024),
                                 max_unzipped_bytes=20 * 1024 * 1024)
    earlier = corpus_dir / "earlier.txt"
    earlier.write_text("The pumpkin festival is held on the second Saturday of October.")
    (before,) = await service.ingest([LocalFile("earlier.txt", earlier)], "gina", "chat")
    assert before.outcome == "ingested"

    good = make_pdf(corpus_dir / "good.pdf", [("Minutes", ["The committee approved the new cricket pavilion. "
                                                           "Work starts in May."])])
    corrupt = corpus_dir / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.7\n" + b"this is not a pdf body " * 200)
    truncated = corpus_dir / "truncated.pdf"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    renamed = corpus_dir / "renamed.pdf"
    renamed.write_text("just some text pretending to be a PDF")
    empty = corpus_dir / "empty.docx"
    empty.write_bytes(b"")
    huge = corpus_dir / "huge.txt"
    huge.write_bytes(b"lorem ipsum " * 300_000)  # 3.4 MB, over the 2 MB limit
    bomb = make_zip_bomb_docx(corpus_dir / "bomb.docx", 64 * 1024 * 1024)
    not_zip = corpus_dir / "fake.docx"
    not_zip.write_text("hello")
    encrypted_office = corpus_dir / "locked.xlsx"
    encrypted_office.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    zip_not_docx = corpus_dir / "archive.docx"
    with zipfile.ZipFile(zip_not_docx, "w") as zf:
        zf.writestr("readme.txt", "not a word document")
    binary_txt = corpus_dir / "binary.txt"
    binary_txt.write_bytes(b"\x00\x01\x02garbage\x00" * 50)
    image = corpus_dir / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    exe = corpus_dir / "tool.exe"
    exe.write_bytes(b"MZ" + b"\0" * 100)
    files = [
        ("corrupt.pdf", corrupt, "damaged PDF"),
        ("truncated.pdf", truncated, "damaged PDF"),
        ("renamed.pdf", renamed, "not a PDF"),
        ("locked.pdf", make_encrypted_pdf(corpus_dir / "locked.pdf"), "password-protected"),
        ("scan.pdf", make_scanned_pdf(corpus_dir / "scan.pdf"), "no text layer"),
        ("empty.docx", empty, "is empty"),
        ("huge.txt", huge, "over the 2.0 MB limit"),
        ("bomb.docx", bomb, "zip bomb"),
        ("fake.docx", not_zip, "not a valid DOCX"),
        ("locked.xlsx", encrypted_office, "password-protected"),
        ("archive.docx", zip_not_docx, "not a DOCX document"),
        ("binary.txt", binary_txt, "binary data"),
        ("photo.png", image, "is an image"),
        ("tool.exe", exe, "unsupported type"),
        ("report.doc", exe, "old binary Office file"),
        ("missing.pdf", corpus_dir / "does-not-exist.pdf", "could not be read"),
    ]
    uploads = [LocalFile(name, path) for name, path, _ in files]
    uploads.insert(7, LocalFile("good.pdf", good))

    results = await service.ingest(uploads, "gina", "chat")

    by_name = {r.file_name: r for r in results}
    assert by_name["good.pdf"].outcome == "ingested", by_name["good.pdf"].message
    for name, _, expected in files:
        result = by_name[name]
        assert result.outcome == "failed", (name, result.message)
        assert name in result.message and expected in result.message, (name, result.message)
        assert "Traceback" not in result.message
    hits = await service.search("pumpkin festival", "gina", "chat")
    assert hits and hits[0].file_name == "earlier.txt"  # nothing stored earlier was lost
    hits = await service.search("cricket pavilion", "gina", "chat")
    assert hits[0].file_name == "good.pdf"
    assert sorted(d.file_name for d in await service.list_documents("gina")) == ["earlier.txt", "good.pdf"]


async def test_page_and_chunk_limits(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service(max_pages=3, max_chunks=2)
    long_pdf = make_pdf(corpus_dir / "long.pdf", [(f"Page {n}", [prose(n)]) for n in range(5)])
    many = corpus_dir / "many.md"
    many.write_text("\n\n".join(f"# Heading {n}\n\n{prose(n)}" for n in range(6)))
    results = await service.ingest([LocalFile("long.pdf", long_pdf), LocalFile("many.md", many)], "hal", "c")
    assert [r.outcome for r in results] == ["failed", "failed"]
    assert "5 pages, over the 3-page limit" in results[0].message
    assert "over the limit of 2 per file" in results[1].message


HOSTILE_OWNERS = [
    "alice",
    "alice2",  # alice is a prefix of it
    "ali",
    'al"ice',
    "al'ice",
    "back\\slash\\",
    "%",
    "*",
    "_",
    '" or owner_key != "',
    "' or 1 == 1 or '",
    'x" || owner_key like "%',
    "ålîçé ☃",
    " ",
]


async def test_owners_never_see_each_others_chunks(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    secrets: dict[str, str] = {}
    doc_ids: dict[str, str] = {}
    for n, owner in enumerate(HOSTILE_OWNERS):
        secret = f"The vault code of owner number {n} is passphrase-{n}-zebra-{n * 7919}."
        path = corpus_dir / f"secret{n}.txt"
        path.write_text(secret)
        (result,) = await service.ingest([LocalFile("secret.txt", path)], owner, "shared-chat-id")
        assert result.outcome == "ingested", (owner, result.message)
        secrets[owner] = secret
        doc_ids[owner] = result.doc_id or ""

    for owner in HOSTILE_OWNERS:
        for scope in ("shared-chat-id", None):
            hits = await service.search("vault code passphrase zebra owner number", owner, scope, k=20)
            assert [h.text for h in hits] == [secrets[owner]], (owner, hits)
        dense = await service.search("vault code passphrase zebra owner number", owner, None, k=20, mode="dense")
        assert [h.text for h in dense] == [secrets[owner]], (owner, dense)
        docs = await service.list_documents(owner)
        assert [d.doc_id for d in docs] == [doc_ids[owner]]

    # Nobody can delete another owner's document, even knowing its id.
    assert not await service.delete_document("alice2", doc_ids["alice"])
    assert not await service.delete_document('" or owner_key != "', doc_ids["alice"])
    assert await service.delete_chat('" or owner_key != "', "shared-chat-id") == 1
    assert await service.delete_chat("%", "shared-chat-id") == 1
    for owner in HOSTILE_OWNERS:
        expected = 0 if owner in ('" or owner_key != "', "%") else 1
        assert len(await service.list_documents(owner)) == expected, owner
    assert await service.delete_document("alice", doc_ids["alice"])
    assert len(await service.list_documents("alice2")) == 1


async def test_chat_scope_and_search_across_chats(make_service: ServiceFactory, corpus_dir: Path) -> None:
    service = await make_service()
    path = corpus_dir / "kiln.txt"
    path.write_text("The pottery kiln must cool for nine hours before opening.")
    await service.ingest([LocalFile("kiln.txt", path)], "ivy", "chat-one")
    assert await service.search("pottery kiln cooling", "ivy", "chat-two") == []
    assert (await service.search("pottery kiln cooling", "ivy", None))[0].file_name == "kiln.txt"
    assert (await service.search("pottery kiln cooling", "ivy", "chat-one"))[0].chat_id == "chat-one"
    assert await service.search("   ", "ivy", None) == []
    assert await service.search("!!!", "ivy", None) != []  # no BM25 terms: dense alone still answers


def test_filters_accept_only_hex_digests() -> None:
    owner = key_of('" or owner_key != "')
    assert scope_filter(owner) == f'owner_key == "{owner}"'
    assert scope_filter(owner, chat_key=key_of("c"), first_chunk=True).endswith("and chunk_index == 0")
    for bad in ['" or 1 == 1 or "', "alice", "A" * 64, owner + " ", owner[:-1] + '"']:
        with pytest.raises(ValueError):
            scope_filter(bad)
        with pytest.raises(ValueError):
            scope_filter(owner, doc_id=bad)


async def test_a_changed_embedding_model_is_caught(tmp_path: Path) -> None:
    uri = str(tmp_path / "m.db")
    store = await asyncio.to_thread(MilvusStore.open, uri, "docs", "model-a", 384)
    await asyncio.to_thread(store.close)
    for model, dim in (("model-b", 384), ("model-a", 768)):
        with pytest.raises(Exception, match="was built with the embedding model model-a") as info:
            await asyncio.to_thread(MilvusStore.open, uri, "docs", model, dim)
        assert "ENSEMBLE_RAG__COLLECTION" in str(info.value)
    again = await asyncio.to_thread(MilvusStore.open, uri, "docs", "model-a", 384)
    await asyncio.to_thread(again.close)
