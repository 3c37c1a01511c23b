"""Known library noise, quietened at its source so that a normal start prints no tracebacks.

Each entry says why it is noise. Real failures of these libraries still reach the log: only the records
named here are dropped or lowered.
"""

from __future__ import annotations

import logging
import traceback

# Loggers that report routine work at INFO, drowning the app's own lines:
QUIET_LOGGERS = {
    # one line per HTTP request: every model call, health probe and embedding batch
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # Milvus Lite's faiss probes for CPU-specific builds and logs every one it does not ship (AVX512-SPR,
    # AVX512, AVX2) before loading the generic one, which is what it always uses
    "faiss.loader": logging.WARNING,
}


class UnimplementedMilvusLiteCall(logging.Filter):
    """Drops the traceback gRPC logs when pymilvus asks Milvus Lite's in-process server for a method Lite
    does not implement (`AllocTimestamp`): pymilvus then falls back by itself, so nothing failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, NotImplementedError) or error.__traceback__ is None:
            return True
        frames = traceback.extract_tb(error.__traceback__)
        return not (frames and "pymilvus/grpc_gen" in frames[-1].filename.replace("\\", "/"))


def quiet_library_noise() -> None:
    """Lower or drop the library records above (idempotent)."""
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
    grpc_server = logging.getLogger("grpc._server")
    if not any(isinstance(f, UnimplementedMilvusLiteCall) for f in grpc_server.filters):
        grpc_server.addFilter(UnimplementedMilvusLiteCall())
