"""Documents specialist: answers from the user's uploaded files (Milvus hybrid retrieval) with [n] citations."""

import re

from agents.specialists.base import SpecialistSpec
from agents.specialists.documents.specialist import MODEL, build

SPEC = SpecialistSpec(
    name="documents",
    title="Documents",
    description="Answers questions about files the user uploaded (PDF, DOCX, PPTX, XLSX, CSV, HTML, Markdown, "
    "TXT, email) from their text, citing file and page; lists and deletes the user's documents.",
    enable_hint="documents need the document store and an embedder: install the `docs` and `local` extras "
    "(pip install 'ensemble[local]'), or set ENSEMBLE_EMBEDDINGS__BASE_URL to a TEI server and "
    "ENSEMBLE_RAG__MILVUS_URI to a Milvus server; the startup log says what failed",
    asks_for=re.compile(
        r"\b(my|the|this|these|that|uploaded|attached)\s+(documents?|files?|pdfs?|docx|uploads?|slides?|"
        r"spreadsheets?|reports?|papers?|contracts?)\b|\b(in|from|according to)\s+the\s+(document|file|pdf)\b",
        re.I,
    ),
    build=build,
    model_role=MODEL,
    needs=("documents",),
    command="/docs",
)
