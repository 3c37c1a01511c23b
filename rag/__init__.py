"""Documents (RAG): ingestion with unstructured, embeddings (TEI or local), Milvus hybrid retrieval.

The app builds one `DocumentService` at startup with `await rag.start(settings)`; nothing here runs at
import. See `rag.service` for the API.
"""

from rag.errors import DocumentRejected, DocumentsUnavailable, EmbeddingMismatch
from rag.service import DocumentService, start
from rag.types import DocumentInfo, IngestProgress, IngestResult, LocalFile, SearchHit, UploadedFile

__all__ = [
    "DocumentInfo",
    "DocumentRejected",
    "DocumentService",
    "DocumentsUnavailable",
    "EmbeddingMismatch",
    "IngestProgress",
    "IngestResult",
    "LocalFile",
    "SearchHit",
    "UploadedFile",
    "start",
]
