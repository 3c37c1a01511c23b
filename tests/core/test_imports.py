"""Background threads start only after numpy is imported in the starting thread (see core/imports.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# In a fresh interpreter: record, for every thread started, whether numpy was already imported.
PROBE = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    from pathlib import Path

    seen = []
    start = threading.Thread.start

    def recording_start(self):
        seen.append([self.name, "numpy" in sys.modules])
        start(self)

    threading.Thread.start = recording_start
    from core.local_embeddings import LocalEmbedder
    from rag.store import MilvusStore

    before = "numpy" in sys.modules

    async def main():
        if sys.argv[1] == "store":
            MilvusStore.opening(sys.argv[2] + "/milvus.db", "probe", "model", 8).client.close()
        else:
            try:
                await LocalEmbedder(Path(sys.argv[2])).start().ready()
            except Exception:
                pass  # loading may fail without a converted model: only the thread's start matters

    asyncio.run(main())
    print(json.dumps({"before": before, "seen": seen}))
    """
)


@pytest.mark.parametrize("starter", ["store", "embedder"])
def test_threads_start_after_numpy_is_imported(starter: str, tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, starter, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before"] is False, "numpy was imported before the probe; it cannot tell anything"
    assert report["seen"], "no thread started"
    assert all(numpy for _, numpy in report["seen"]), report["seen"]
