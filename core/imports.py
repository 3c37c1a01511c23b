"""Libraries imported in the caller's thread before background threads that need them start.

Two threads importing numpy at the same time can fail: CPython's per-module import locks break a
would-be deadlock by handing one thread a partially initialised numpy submodule (`ImportError:
cannot import name ... from partially initialized module 'numpy._core...'`; seen here when the local
embedder's loading thread and Milvus Lite's opening thread started together). Whoever starts such a
thread imports the shared base libraries first, in its own thread.
"""

from __future__ import annotations

import contextlib
import importlib

SHARED_BASES = ("numpy",)  # imported by onnxruntime, pymilvus, pandas and memory's scoring


def preload_shared_bases(*also: str) -> None:
    """Import `SHARED_BASES` (and `also`) now (a no-op once imported; a missing one is left to its real user)."""
    for name in (*SHARED_BASES, *also):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
