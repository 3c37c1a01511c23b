"""Uploaded CSV/TSV/XLSX files as tables in DuckDB (in-process), per user and per chat.

- `check_table` (at upload, in a worker thread) reads the whole file once and refuses what cannot be a
  table, with a message for the chat: not UTF-8 text, ragged rows, XLSX formulas without saved values,
  no header or no rows.
- `TableStore.load` turns a chat's table files into Parquet files under
  `<data_dir>/tables/<sha256(user)>/<sha256(chat)>/`: the folder is derived from the caller's ids, so a
  chat can only ever see its own tables; source paths must resolve inside the data directory.
- `TableStore.query` runs one validated SELECT on a fresh in-memory DuckDB holding only that chat's
  tables, with external access switched off and the configuration locked before the query runs.

Everything here blocks: the specialist calls it through `asyncio.to_thread`.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.specialists.base import FileRef
from core.errors import EnsembleError
from core.settings import Settings

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".xlsx": "xlsx"}
TABLE_MIMES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
MAX_RESULT_ROWS = 200
SAMPLE_ROWS = 3
QUERY_TIMEOUT = 20.0  # seconds
STORE_VERSION = "1"
_IDENT = re.compile(r"[^a-z0-9]+")


class TableError(EnsembleError):
    """A file that cannot be a table, or a query that cannot run; the message is for the chat."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str

    @property
    def numeric(self) -> bool:
        return self.type.upper().split("(")[0] in {
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
            "FLOAT",
            "DOUBLE",
            "REAL",
            "DECIMAL",
        }


@dataclass(frozen=True)
class Table:
    """One loaded table: its SQL name, the file (and sheet) it came from, columns, rows, a few sample rows."""

    name: str
    file_name: str
    path: Path  # its Parquet file
    columns: tuple[Column, ...]
    rows: int
    sample: tuple[tuple[Any, ...], ...]

    def describe(self) -> str:
        """Schema and sample rows, as the model sees them (never the whole table)."""
        cols = ", ".join(f'"{c.name}" {c.type}' for c in self.columns)
        lines = [f"TABLE {self.name} ({cols}) -- {self.rows} rows, from {self.file_name}"]
        for row in self.sample:
            lines.append("  sample: " + ", ".join(_short(v) for v in row))
        return "\n".join(lines)


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool


def table_kind(file: FileRef) -> str | None:
    """`csv`, `tsv` or `xlsx` when the file is a table by its name or type, else None."""
    suffix = Path(file.name).suffix.lower()
    return TABLE_SUFFIXES.get(suffix) or TABLE_MIMES.get(file.mime.split(";")[0].strip().lower())


def identifier(name: str) -> str:
    """A safe SQL identifier from a file or sheet name (lowercase letters, digits, underscores)."""
    ident = _IDENT.sub("_", name.lower()).strip("_")[:48] or "table"
    return f"t_{ident}" if ident[0].isdigit() else ident


# ---------------------------------------------------------------------------------- reading files


def _connect() -> Any:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET threads TO 2")
    return con


def _check_encoding(path: Path, name: str) -> None:
    """UTF-8 (with or without a BOM) only; other encodings are named, so the user knows what to fix."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise TableError(f"“{name}” is UTF-16 text; save it as CSV UTF-8 and upload it again.")
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        while block := handle.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                position = offset + exc.start
                raise TableError(
                    f"“{name}” is not UTF-8 text (byte {position} cannot be read as UTF-8; it may be Latin-1 "
                    "or Windows-1252): save it as “CSV UTF-8” and upload it again."
                ) from exc
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise TableError(f"“{name}” ends in the middle of a UTF-8 character; the file is cut short.") from exc


DELIMITERS = {",": "','", ";": "';'", "\t": "'\\t'", "|": "'|'"}


def _check_rows(path: Path, name: str, kind: str) -> str:
    """Every row as wide as the header (Python's csv module, whole file); returns the delimiter."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        if not first.strip():
            raise TableError(f"“{name}” has no header row: the first line is empty.")
        if kind == "tsv":
            delimiter = "\t"
        else:
            counts = {d: first.count(d) for d in DELIMITERS}
            delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader)
        width = len(header)
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != width:
                raise TableError(
                    f"“{name}” has rows of different lengths: line {reader.line_num} has {len(row)} values where "
                    f"the header has {width}. Every row needs one value per column (quote values that contain "
                    f"“{delimiter if delimiter != chr(9) else 'tab'}”); fix the file and upload it again."
                )
    if rows == 0:
        raise TableError(f"“{name}” has a header but no rows of data.")
    return delimiter


def _csv_to_parquet(path: Path, name: str, kind: str, target: Path | None) -> int:
    """Read the whole delimited file strictly (every row the header's width); write it as Parquet."""
    import duckdb

    _check_encoding(path, name)
    delimiter = _check_rows(path, name, kind)
    if target is None:
        return 0
    con = _connect()
    options = f"header = true, delim = {DELIMITERS[delimiter]}, quote = '\"', escape = '\"', sample_size = 20480"
    try:
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv(?, {options})", [str(path)])
        rows = int(con.execute("SELECT count(*) FROM t").fetchone()[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        con.execute(f"COPY t TO {_path_literal(partial)} (FORMAT parquet)")
        partial.replace(target)
    except duckdb.Error as exc:
        raise TableError(_csv_error(name, str(exc))) from exc
    finally:
        con.close()
    return rows


def _csv_error(name: str, text: str) -> str:
    line = re.search(r"[Ll]ine:?\s*(\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    if "Expected Number of Columns" in text or "too many columns" in text.lower() or "columns" in text.lower():
        expected = re.search(r"Expected Number of Columns:\s*(\d+)\s*Found:\s*(\d+)", text)
        detail = f": {expected.group(2)} values where the header has {expected.group(1)}" if expected else ""
        return (
            f"“{name}” has rows of different lengths{where}{detail}. Every row needs as many values as the "
            "header has columns; fix that row (or quote values that contain the delimiter) and upload again."
        )
    if "unicode" in text.lower():
        return f"“{name}” is not UTF-8 text{where}: save it as “CSV UTF-8” and upload it again."
    first = text.strip().splitlines()[0] if text.strip() else "unreadable"
    return f"“{name}” could not be read as a table{where}: {first[:200]}"


def _xlsx_sheets(path: Path, name: str) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
    """Each non-empty sheet: its name, header and rows, values as Excel last saved them.

    A formula whose value was never saved (a file written by a program that does not calculate) is
    refused with the cells named: a number would otherwise be silently missing.
    """
    import zipfile

    from openpyxl import load_workbook

    try:
        formulas = load_workbook(path, read_only=True, data_only=False)
        values = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise TableError(f"“{name}” is not a readable XLSX workbook ({type(exc).__name__}).") from exc
    sheets = []
    try:
        for sheet in formulas.worksheets:
            value_rows = list(values[sheet.title].iter_rows(values_only=True))
            unsaved: list[str] = []
            for r, row in enumerate(sheet.iter_rows(values_only=True)):
                for c, cell in enumerate(row):
                    if isinstance(cell, str) and cell.startswith("="):
                        saved = value_rows[r][c] if r < len(value_rows) and c < len(value_rows[r]) else None
                        if saved is None:
                            unsaved.append(f"{_column_letter(c)}{r + 1}")
            if unsaved:
                cells = ", ".join(unsaved[:5]) + (f" and {len(unsaved) - 5} more" if len(unsaved) > 5 else "")
                raise TableError(
                    f"“{name}” (sheet “{sheet.title}”) has formulas whose values were never calculated "
                    f"({cells}). Open it in a spreadsheet program, save it (so the values are stored) and "
                    "upload it again, or export the sheet as CSV."
                )
            rows = [row for row in value_rows if any(v is not None and v != "" for v in row)]
            if not rows:
                continue
            header = [str(v).strip() if v is not None else "" for v in rows[0]]
            width = max(len(header), *(len(r) for r in rows))
            header += [""] * (width - len(header))
            header = [h or f"column_{i + 1}" for i, h in enumerate(header)]
            body = [tuple(list(r) + [None] * (width - len(r))) for r in rows[1:]]
            sheets.append((sheet.title, header, body))
    finally:
        formulas.close()
        values.close()
    if not sheets or not any(body for _, _, body in sheets):
        raise TableError(f"“{name}” has no sheet with a header row and data below it.")
    return sheets


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _xlsx_to_parquet(path: Path, name: str, folder: Path | None) -> list[tuple[str, Path | None, int]]:
    import pandas as pd

    out = []
    sheets = _xlsx_sheets(path, name)
    for title, header, body in sheets:
        if not body:
            continue
        frame = pd.DataFrame(body, columns=_unique(header))
        for column in frame.columns:  # mixed columns (numbers and text) become text, as a CSV reader would
            if frame[column].dtype == object:
                kinds = {type(v) for v in frame[column] if v is not None}
                if len(kinds) > 1:
                    frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        target = None
        if folder is not None:
            target = folder / f"{identifier(title)}.sheet.parquet"
            folder.mkdir(parents=True, exist_ok=True)
            con = _connect()
            try:
                con.register("frame", frame)
                partial = target.with_suffix(".partial")
                con.execute(f"COPY (SELECT * FROM frame) TO {_path_literal(partial)} (FORMAT parquet)")
                partial.replace(target)
            finally:
                con.close()
        out.append((title, target, len(frame)))
    return out


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count + 1}")
    return out


def check_table(file: FileRef, settings: Settings) -> FileRef:
    """At upload: the file reads as a table (or a TableError says why); nothing is stored yet."""
    kind = table_kind(file)
    if kind is None:
        raise TableError(f"“{file.name}” is not a CSV, TSV or XLSX file.")
    path = Path(file.path)
    if kind == "xlsx":
        _xlsx_sheets(path, file.name)
    else:
        _csv_to_parquet(path, file.name, kind, None)
    return file


# ---------------------------------------------------------------------------------- the store


class TableStore:
    """The tables of every user's chats, as Parquet files under `<data_dir>/tables`."""

    def __init__(self, settings: Settings) -> None:
        self.root = (settings.data_dir / "tables").resolve()
        self.data_dir = settings.data_dir.resolve()
        self._lock = threading.Lock()  # one load at a time: a file is converted once

    def folder(self, user_id: str, thread_id: str) -> Path:
        return self.root / _key(user_id) / _key(thread_id)

    def _source(self, file: FileRef) -> Path:
        """The upload's path, which must be a regular file inside the data directory."""
        path = Path(file.path).resolve()
        if not path.is_relative_to(self.data_dir) or path.is_relative_to(self.root) or not path.is_file():
            raise TableError(f"“{file.name}” is not one of this chat's uploaded files.")
        return path

    def load(self, user_id: str, thread_id: str, files: Sequence[FileRef]) -> list[Table]:
        """This chat's tables, converting the files not converted yet (each file once)."""
        folder = self.folder(user_id, thread_id)
        tables: list[Table] = []
        names: set[str] = set()
        with self._lock:
            for file in files:
                kind = table_kind(file)
                if kind is None:
                    continue
                source = self._source(file)
                digest = hashlib.sha256(f"{STORE_VERSION}:{file.id}:{source}".encode()).hexdigest()[:32]
                target = folder / digest
                if not (target / "done").is_file():
                    target.mkdir(parents=True, exist_ok=True)
                    if kind == "xlsx":
                        _xlsx_to_parquet(source, file.name, target)
                    else:
                        _csv_to_parquet(source, file.name, kind, target / "data.parquet")
                    (target / "done").write_text(file.name)
                parquets = sorted(target.glob("*.parquet"))
                for parquet in parquets:
                    base = Path(file.name).stem
                    if parquet.name != "data.parquet":
                        sheet = parquet.name.removesuffix(".sheet.parquet")
                        base = f"{base}_{sheet}" if len(parquets) > 1 else base
                    name = identifier(base)
                    while name in names:
                        name = f"{name}_2"
                    names.add(name)
                    tables.append(self._describe(name, file.name, parquet))
        return tables

    def _describe(self, name: str, file_name: str, parquet: Path) -> Table:
        con = _connect()
        try:
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet({_path_literal(parquet)})')
            columns = tuple(Column(str(r[0]), str(r[1])) for r in con.execute(f'DESCRIBE "{name}"').fetchall())
            rows = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            sample = tuple(tuple(r) for r in con.execute(f'SELECT * FROM "{name}" LIMIT {SAMPLE_ROWS}').fetchall())
        finally:
            con.close()
        return Table(name, file_name, parquet, columns, rows, sample)

    def query(self, tables: Sequence[Table], sql: str) -> Result:
        """Run one validated SELECT over `tables` only: external access off and locked before it runs."""
        import duckdb

        from agents.specialists.data.sql import validate

        sql = validate(sql, {t.name for t in tables})
        con = _connect()
        timer: threading.Timer | None = None
        try:
            for table in tables:
                con.execute(f'CREATE TABLE "{table.name}" AS SELECT * FROM read_parquet(?)', [str(table.path)])
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            timer = threading.Timer(QUERY_TIMEOUT, con.interrupt)
            timer.start()
            cursor = con.execute(sql)
            names = tuple(d[0] for d in cursor.description or ())
            rows = cursor.fetchmany(MAX_RESULT_ROWS + 1)
        except duckdb.InterruptException as exc:
            raise TableError(f"The query took longer than {QUERY_TIMEOUT:g} s and was stopped.") from exc
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0][:300]
            raise TableError(f"The query failed: {first}") from exc
        finally:
            if timer is not None:
                timer.cancel()
            con.close()
        return Result(names, tuple(tuple(r) for r in rows[:MAX_RESULT_ROWS]), len(rows) > MAX_RESULT_ROWS)

    def forget(self, thread_id: str) -> None:
        """Remove a deleted chat's tables, whoever's chat it was (the chat id is unique)."""
        import shutil

        key = _key(thread_id)
        if not self.root.is_dir():
            return
        for user_folder in self.root.iterdir():
            target = user_folder / key
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)


def _path_literal(path: Path) -> str:
    """A path of the store (hex folder names and fixed file names) as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _key(raw: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise TableError("A table needs a user and a chat.")
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _short(value: Any, limit: int = 40) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
