"""Errors of the documents feature; each message is written for the chat user."""

from __future__ import annotations

from core.errors import EnsembleError


class DocumentRejected(EnsembleError):
    """A file that cannot be ingested: wrong type, too big, corrupt, encrypted, empty."""


class EmbeddingMismatch(EnsembleError):
    """The store was built with another embedding model or dimension than the configured one."""


class DocumentsUnavailable(EnsembleError):
    """The documents feature could not start (store or embedder unreachable or misconfigured)."""
