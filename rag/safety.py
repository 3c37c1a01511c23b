"""Checks a file before any parser sees it: type, size, signature, encryption, zip bombs; and its hash.

Blocking (reads the file): call it off the event loop.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import DocumentRejected

Kind = Literal["pdf", "docx", "pptx", "xlsx", "csv", "tsv", "html", "md", "text", "eml"]

KINDS: dict[str, Kind] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".tsv": "tsv",
    ".html": "html",
    ".htm": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "text",
    ".text": "text",
    ".eml": "eml",
}
SUPPORTED = "PDF, DOCX, PPTX, XLSX, CSV, TSV, HTML, Markdown, TXT and EML"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic"}
OLD_OFFICE = {".doc": ".docx", ".ppt": ".pptx", ".xls": ".xlsx"}
OOXML_MAIN_PART = {"docx": "word/document.xml", "pptx": "ppt/presentation.xml", "xlsx": "xl/workbook.xml"}
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
MAX_ZIP_MEMBERS = 10_000
MAX_MEMBER_RATIO = 200  # uncompressed/compressed, for members over 1 MiB
TEXT_KINDS = {"csv", "tsv", "html", "md", "text", "eml"}


@dataclass(frozen=True)
class CheckedFile:
    """A file that passed the checks."""

    path: Path
    name: str
    kind: Kind
    size: int
    sha256: str


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def kind_of(name: str) -> Kind:
    """The document kind of a file name, or a `DocumentRejected` saying why it is not supported."""
    suffix = Path(name).suffix.lower()
    if suffix in KINDS:
        return KINDS[suffix]
    if suffix in IMAGE_SUFFIXES:
        raise DocumentRejected(
            f"“{name}” is an image, not a document; ask about images directly instead "
            f"(documents can be {SUPPORTED})."
        )
    if suffix in OLD_OFFICE:
        raise DocumentRejected(
            f"“{name}” is an old binary Office file; save it as {OLD_OFFICE[suffix]} and upload it again."
        )
    shown = suffix or "no extension"
    raise DocumentRejected(f"“{name}” has an unsupported type ({shown}); documents can be {SUPPORTED}.")


def check_file(path: str | Path, name: str, *, max_bytes: int, max_unzipped_bytes: int) -> CheckedFile:
    """Validate `path` (shown to users as `name`) and hash it; raises `DocumentRejected` with the reason."""
    path = Path(path)
    kind = kind_of(name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentRejected(f"“{name}” could not be read from the upload area ({exc.strerror}).") from exc
    if size == 0:
        raise DocumentRejected(f"“{name}” is empty (0 bytes).")
    if size > max_bytes:
        raise DocumentRejected(f"“{name}” is {_mib(size)}, over the {_mib(max_bytes)} limit for documents.")
    with path.open("rb") as fh:
        head = fh.read(8192)
    if kind == "pdf":
        if b"%PDF-" not in head[:1024]:
            raise DocumentRejected(
                f"“{name}” is not a PDF (it has no PDF header); it may be corrupt or renamed."
            )
    elif kind in OOXML_MAIN_PART:
        _check_ooxml(path, name, kind, head, max_unzipped_bytes)
    elif kind in TEXT_KINDS and b"\x00" in head:
        raise DocumentRejected(f"“{name}” looks like binary data, not {kind.upper()} text.")
    return CheckedFile(path=path, name=name, kind=kind, size=size, sha256=file_sha256(path))


def _check_ooxml(path: Path, name: str, kind: Kind, head: bytes, max_unzipped_bytes: int) -> None:
    ext = kind.upper()
    if head.startswith(OLE_MAGIC):
        raise DocumentRejected(
            f"“{name}” is password-protected (encrypted) or an old binary Office file; "
            f"remove the password, save it as .{kind} and upload it again."
        )
    if not head.startswith(ZIP_MAGIC):
        raise DocumentRejected(
            f"“{name}” is not a valid {ext} file (it is not a zip package); it may be corrupt or renamed."
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {info.filename for info in infos}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentRejected(f"“{name}” is a damaged {ext} file (its zip structure is broken).") from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DocumentRejected(
            f"“{name}” holds {len(infos)} parts, more than a {ext} file plausibly has; it was not opened."
        )
    total = sum(info.file_size for info in infos)
    if total > max_unzipped_bytes:
        raise DocumentRejected(
            f"“{name}” would unpack to {_mib(total)}, over the {_mib(max_unzipped_bytes)} "
            "limit (a zip bomb?); it was not opened."
        )
    for info in infos:
        if info.file_size > 1024 * 1024 and info.file_size > MAX_MEMBER_RATIO * max(info.compress_size, 1):
            raise DocumentRejected(
                f"“{name}” contains a part compressed {info.file_size // max(info.compress_size, 1)}:1 "
                "(a zip bomb?); it was not opened."
            )
    if OOXML_MAIN_PART[kind] not in names:
        raise DocumentRejected(
            f"“{name}” is a zip file but not a {ext} document (no {OOXML_MAIN_PART[kind]})."
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
