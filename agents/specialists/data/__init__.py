"""Data specialist: questions computed over the user's uploaded CSV/TSV/XLSX tables with DuckDB, query shown."""

import re

from agents.specialists.base import SpecialistSpec, UploadRule
from agents.specialists.data.specialist import MODEL, DataSpecialist, build
from agents.specialists.data.tables import check_table


async def _forget_chat(specialist: object, thread_id: str) -> None:
    import asyncio

    if isinstance(specialist, DataSpecialist):
        await asyncio.to_thread(specialist.store.forget, thread_id)


SPEC = SpecialistSpec(
    name="data",
    title="Data",
    description="Computes answers over spreadsheets and CSV/XLSX tables the user uploaded (averages, totals, "
    "counts, maxima per group) by running a SQL query on them, and shows the query and the result table.",
    enable_hint="tables need DuckDB: install the `docs` or `local` extra (pip install 'ensemble[local]')",
    asks_for=re.compile(
        r"\b(in|of|from|on)\s+(the|my|this|that|these|attached|uploaded)\s+(uploaded\s+|attached\s+)?"
        r"(tables?|spreadsheets?|csv|tsv|xlsx|excel( file| sheet)?|data ?sets?|sheets?|data file)\b",
        re.I,
    ),
    build=build,
    model_role=MODEL,
    command="/data",
    needs=("tables",),  # offered only in a chat where a table was shared
    routes_directly=True,  # "... in the table/spreadsheet/CSV" is unmistakable
    uploads=UploadRule(
        kinds=("table",),
        check=check_table,
        unread="“{name}” is a table, but tables cannot be queried here: {hint}. It was read as a document instead.",
        otherwise_documents=True,
    ),
    forget_chat=_forget_chat,
)
