"""A Milvus store opened in the background: startup does not wait, calls do, errors reach the first call."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag.errors import EmbeddingMismatch
from rag.store import MilvusStore, key_of, scope_filter


def test_opening_returns_at_once_and_calls_wait_for_the_store(tmp_path: Path) -> None:
    began = time.perf_counter()
    store = MilvusStore.opening(str(tmp_path / "lazy.db"), "lazy", "model-a", 4)
    returned = time.perf_counter() - began
    assert returned < 0.5, f"opening() must not wait for Milvus Lite ({returned:.2f} s)"
    try:
        assert store.count(scope_filter(key_of("alice"))) == 0  # waits for the collection, then answers
        assert store.state == "ready"
    finally:
        store.close()


def test_a_store_that_cannot_open_reports_why_on_first_use(tmp_path: Path) -> None:
    uri = str(tmp_path / "mismatch.db")
    MilvusStore.open(uri, "docs", "model-a", 4).close()
    store = MilvusStore.opening(uri, "docs", "model-b", 8)
    with pytest.raises(EmbeddingMismatch, match="model-a"):
        store.count(scope_filter(key_of("alice")))
    assert "model-a" in store.state
    store.close()  # nothing to close, and no error


def test_a_deferred_store_opens_on_its_first_call_and_not_before(tmp_path: Path) -> None:
    uri = tmp_path / "later.db"
    store = MilvusStore.deferred(str(uri), "later", "model-a", 4)
    assert not store.is_open and store.state == "ready"
    assert not uri.exists(), "a deferred store must not create its Milvus Lite file before it is used"
    store.close()  # never opened: nothing to close
    assert store.count(scope_filter(key_of("alice"))) == 0  # the first call opens it
    assert store.is_open and uri.exists()
    store.close()
