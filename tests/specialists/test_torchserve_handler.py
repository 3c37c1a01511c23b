"""deploy/torchserve/handler.py for real on CPU, with a tiny randomly initialised SDXL pipeline:
through its own entry points, and served by a real TorchServe (PyPI, Java 17) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from agents.specialists.base import TurnContext
from agents.specialists.image.client import ImageGenerationError, TorchServeBackend
from agents.specialists.image.specialist import ImageSpecialist
from core.settings import ImageSettings, Settings
from tests.conftest import free_port
from tests.specialists.tiny_sdxl import build_tiny_sdxl

pytest.importorskip("diffusers", reason="diffusers is needed: pip install -e '.[imagegen-test]'")
pytest.importorskip("transformers", reason="transformers is needed: pip install -e '.[imagegen-test]'")

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "deploy" / "torchserve" / "handler.py"
VENV_BIN = Path(sys.executable).parent


def load_handler_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdxl_turbo_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "pipe")


class FakeContext:
    """What TorchServe hands a handler (ts.context.Context's attributes and response setters)."""

    def __init__(self, model_dir: Path, handler_config: dict[str, Any] | None = None) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 4}
        self.model_yaml_config = {"handler": handler_config or {}}
        self.status: dict[int, tuple[int, str]] = {}
        self.content_type: dict[int, str] = {}

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.status[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_type[idx] = value


@pytest.fixture(scope="module")
def handler(tiny_pipeline: Path) -> Any:
    module = load_handler_module()
    instance = module.SDXLTurboHandler()
    instance.initialize(
        FakeContext(tiny_pipeline.parent, {"model_path": tiny_pipeline.name, "max_side": 256})
    )
    return instance


def read(path: Path) -> bytes:
    return path.read_bytes()


def image_of(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def row(**body: Any) -> dict[str, Any]:
    return {"body": body}


FOX = {
    "prompt": "a red fox in snow",
    "negative_prompt": "",
    "num_inference_steps": 2,
    "seed": 1,
    "width": 64,
    "height": 64,
}


# --- the handler's own entry points -------------------------------------------------------------


def test_only_one_class_so_torchserve_finds_the_handler() -> None:
    module = load_handler_module()
    classes = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    assert [c.__name__ for c in classes] == ["SDXLTurboHandler"]


def test_loads_fp32_on_cpu(handler: Any) -> None:
    assert handler.initialized and handler.device.type == "cpu"
    assert type(handler.pipe).__name__ == "StableDiffusionXLPipeline"
    assert next(handler.pipe.unet.parameters()).dtype.is_floating_point
    assert str(next(handler.pipe.unet.parameters()).dtype) == "torch.float32"


def test_batch_with_a_bad_row(handler: Any, tiny_pipeline: Path) -> None:
    context = FakeContext(tiny_pipeline)
    rows = [
        row(**FOX),
        row(**{**FOX, "prompt": "a cat", "seed": 2}),
        row(**{**FOX, "num_inference_steps": 5}),
        {"body": json.dumps({**FOX, "width": 96, "height": 64}).encode()},  # raw bytes body
    ]
    out = handler.handle(rows, context)
    assert len(out) == 4
    assert image_of(out[0]).size == (64, 64) and image_of(out[1]).size == (64, 64)
    assert image_of(out[3]).size == (96, 64)
    error = json.loads(out[2])
    assert error["code"] == 400 and "between 1 and 4" in error["message"]
    assert context.status == {2: (400, "BadRequest")}
    assert context.content_type == {0: "image/png", 1: "image/png", 2: "application/json", 3: "image/png"}


def test_seed_gives_the_same_image_alone_or_in_a_batch(handler: Any, tiny_pipeline: Path) -> None:
    alone = handler.handle([row(**FOX)], FakeContext(tiny_pipeline))[0]
    batch = handler.handle(
        [row(**{**FOX, "seed": 99, "prompt": "x"}), row(**FOX)], FakeContext(tiny_pipeline)
    )
    a, b = (np.asarray(image_of(x), dtype=np.int16) for x in (alone, batch[1]))
    assert np.abs(a - b).max() <= 2  # batched matmuls may differ in the last bit
    other = np.asarray(image_of(batch[0]), dtype=np.int16)
    assert np.abs(a - other).max() > 20


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": ""}, "`prompt` must be a non-empty string"),
        ({"negative_prompt": "x"}, "`prompt` must be a non-empty string"),
        ({**FOX, "num_inference_steps": 0}, "between 1 and 4"),
        ({**FOX, "num_inference_steps": True}, "`num_inference_steps` must be an integer"),
        ({**FOX, "width": 100}, "`width` must be a multiple of 8 between 64 and 256"),
        ({**FOX, "height": 512}, "`height` must be a multiple of 8 between 64 and 256"),
        ({**FOX, "seed": -1}, "`seed` must be between 0"),
        ({**FOX, "negative_prompt": 3}, "`negative_prompt` must be a string"),
        ({**FOX, "prompt": "x" * 2001}, "longer than 2000"),
    ],
)
def test_bad_requests_get_400(handler: Any, tiny_pipeline: Path, body: dict[str, Any], message: str) -> None:
    context = FakeContext(tiny_pipeline)
    (out,) = handler.handle([{"body": body}], context)
    assert message in json.loads(out)["message"]
    assert context.status[0][0] == 400


def test_non_json_body_gets_400(handler: Any, tiny_pipeline: Path) -> None:
    context = FakeContext(tiny_pipeline)
    (out,) = handler.handle([{"body": b"\xff\xfe not json"}], context)
    assert (
        json.loads(out)["message"] == "the request body must be a JSON object" and context.status[0][0] == 400
    )


def test_missing_weights_fail_clearly(tmp_path: Path) -> None:
    module = load_handler_module()
    with pytest.raises(RuntimeError, match="no diffusers pipeline"):
        module.SDXLTurboHandler().initialize(FakeContext(tmp_path, {"model_path": "/nonexistent/sdxl-turbo"}))


def test_shipped_model_config_is_valid() -> None:
    config = yaml.safe_load((REPO / "deploy" / "torchserve" / "model-config.yaml").read_text())
    assert config["batchSize"] >= 2 and config["maxBatchDelay"] > 0 and config["minWorkers"] >= 1
    assert config["handler"]["model_path"] and config["handler"]["max_side"] >= 512


# --- a real TorchServe ---------------------------------------------------------------------------


@dataclass
class Served:
    inference: str
    management: str
    model: str
    logs: Path


def _wait_ready(management: str, model: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"TorchServe exited with {proc.returncode}")
        try:
            reply = httpx.get(f"{management}/models/{model}", timeout=2)
            if reply.status_code == 200 and any(
                w.get("status") == "READY" for w in reply.json()[0]["workers"]
            ):
                return
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError("TorchServe's worker was not READY in time")


@pytest.fixture(scope="module")
def torchserve_server(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs Java 17 (java not on PATH)")
    for tool in ("torchserve", "torch-model-archiver"):
        if not (VENV_BIN / tool).exists():
            pytest.skip(f"{tool} is not installed: pip install -e '.[imagegen-test]'")
    work = tmp_path_factory.mktemp("torchserve")
    store, logs = work / "model-store", work / "logs"
    store.mkdir()
    logs.mkdir()
    config = yaml.safe_load((REPO / "deploy" / "torchserve" / "model-config.yaml").read_text())
    config.update(deviceType="cpu", maxBatchDelay=400, responseTimeout=60, startupTimeout=120)
    config["handler"] = {"model_path": str(tiny_pipeline), "max_side": 256}
    (work / "model-config.yaml").write_text(yaml.safe_dump(config))
    subprocess.run(
        [
            str(VENV_BIN / "torch-model-archiver"),
            "--model-name", "tiny_sdxl",
            "--version", "1.0",
            "--handler", str(HANDLER),
            "--config-file", str(work / "model-config.yaml"),
            "--archive-format", "no-archive",
            "--export-path", str(store),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    inference, management, metrics = free_port(), free_port(), free_port()
    (work / "config.properties").write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{inference}",
                f"management_address=http://127.0.0.1:{management}",
                f"metrics_address=http://127.0.0.1:{metrics}",
                f"initial_worker_port={free_port()}",
                "disable_token_authorization=true",
                "install_py_dep_per_model=false",
                f"model_store={store}",
                "load_models=tiny_sdxl",
                "default_workers_per_model=1",
            ]
        )
        + "\n"
    )
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "LOG_LOCATION": str(logs),
        "METRICS_LOCATION": str(logs),
        "TMPDIR": str(work),  # TorchServe keeps its pid file in the temp dir: a private one per instance
    }
    with (work / "torchserve.out").open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "torchserve"), "--start", "--foreground", "--ncs",
             "--ts-config", str(work / "config.properties"), "--model-store", str(store)],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{management}", "tiny_sdxl", proc, time.monotonic() + 150)
        yield Served(f"http://127.0.0.1:{inference}", f"http://127.0.0.1:{management}", "tiny_sdxl", logs)
    finally:
        with_group = proc.pid
        try:
            os.killpg(with_group, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(with_group, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
async def ts_backend(torchserve_server: Served) -> AsyncIterator[TorchServeBackend]:
    settings = ImageSettings(base_url=torchserve_server.inference, model=torchserve_server.model, timeout=60)
    async with httpx.AsyncClient() as http:
        yield TorchServeBackend(settings, http)


@pytest.mark.torchserve
async def test_real_torchserve_returns_png(ts_backend: TorchServeBackend) -> None:
    data = await ts_backend.generate("a red fox in snow", "", 2, 42, 64, 96)
    assert image_of(data).size == (64, 96)
    again = await ts_backend.generate("a red fox in snow", "", 2, 42, 64, 96)
    assert np.abs(np.asarray(image_of(data), np.int16) - np.asarray(image_of(again), np.int16)).max() <= 2


@pytest.mark.torchserve
async def test_real_torchserve_batches_concurrent_requests(
    ts_backend: TorchServeBackend, torchserve_server: Served
) -> None:
    results = await asyncio.gather(
        *(ts_backend.generate(f"a cat number {i}", "", 1, i, 64, 64) for i in range(4))
    )
    assert all(image_of(r).size == (64, 64) for r in results)
    log = "\n".join(p.read_text(errors="replace") for p in torchserve_server.logs.glob("*.log"))
    sizes = [int(n) for n in re.findall(r"generating a batch of (\d+)", log)]
    assert sizes and max(sizes) > 1, sizes


@pytest.mark.torchserve
async def test_real_torchserve_bad_request_is_a_clear_message(ts_backend: TorchServeBackend) -> None:
    with pytest.raises(ImageGenerationError, match=r"HTTP 400\): `width` must be a multiple of 8"):
        await ts_backend.generate("a fox", "", 1, 1, 100, 64)


@pytest.mark.torchserve
async def test_real_torchserve_unknown_model(torchserve_server: Served) -> None:
    settings = ImageSettings(base_url=torchserve_server.inference, model="no_such_model", timeout=30)
    async with httpx.AsyncClient() as http:
        with pytest.raises(ImageGenerationError, match="no model named “no_such_model” \\(HTTP 404\\)"):
            await TorchServeBackend(settings, http).generate("a fox", "", 1, 1, 64, 64)


@pytest.mark.torchserve
async def test_image_specialist_end_to_end_through_torchserve(
    torchserve_server: Served, tmp_path: Path
) -> None:
    image = ImageSettings(
        base_url=torchserve_server.inference, model=torchserve_server.model, timeout=60, width=64, height=64
    )
    settings = Settings(image=image, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(TorchServeBackend(image, http), settings)
        result = await specialist.run(
            "draw a lighthouse at dusk, seed 5, 3 steps", TurnContext("u", "chat-1"), {}
        )
    assert not result.error, result.content
    (artifact,) = result.artifacts
    assert artifact.meta == {
        "prompt": "a lighthouse at dusk",
        "seed": 5,
        "steps": 3,
        "width": 64,
        "height": 64,
        "backend": "TorchServe",
    }
    assert image_of(read(Path(str(artifact.path)))).size == (64, 64)
    assert "seed 5" in result.content and "a lighthouse at dusk" in result.content
