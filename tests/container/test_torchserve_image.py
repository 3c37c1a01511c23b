"""The TorchServe image of the image specialist (deploy/images/torchserve-sdxl), built and run on CPU.

It is built `FROM` a CPU stand-in of pytorch/torchserve:0.12.0-gpu (torchserve-cpu.Containerfile, same
layout, PyPI's CPU torch), then run exactly as the model-server chart runs it: the chart's command line
and its rendered config.properties, the pipeline mounted read-only where the chart mounts the node's
weight cache (/models/sdxl-turbo), here a tiny randomly initialised SDXL pipeline built by the test.
The server is reached through published ports (its own network), so the chart's fixed ports are kept.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.container.conftest import Container, Podman, start
from tests.deploy.conftest import elements, layered_values, render_chart

pytest.importorskip("diffusers", reason="diffusers builds the tiny pipeline: pip install -e '.[imagegen-test]'")
from tests.specialists.tiny_sdxl import build_tiny_sdxl

# a cold build (dependencies from PyPI, 2 shared cores) takes minutes: more than the suite's 300 s
pytestmark = [pytest.mark.timeout(2400), pytest.mark.container, pytest.mark.torchserve]

BASE = "localhost/torchserve-cpu:0.12"
IMAGE = "localhost/ensemble-torchserve-sdxl:test"


@pytest.fixture(scope="module")
def torchserve_image(podman: Podman, debian_java_base: str) -> str:
    here = REPO / "tests" / "container"
    podman.build(here, BASE, containerfile=here / "torchserve-cpu.Containerfile", build_args={"BASE": debian_java_base})
    podman.build(REPO / "deploy" / "torchserve", IMAGE,
                 containerfile=REPO / "deploy" / "images" / "torchserve-sdxl" / "Dockerfile", build_args={"BASE": BASE})
    return IMAGE


def _chart_server() -> tuple[list[str], str, str]:
    """The torchserve-sdxl server's command, config.properties and model mount path, as the chart renders them."""
    el = next(e for e in elements("dev") if e["name"] == "torchserve-sdxl")
    objects = render_chart(REPO / el["path"], layered_values(el), el["name"], el["namespace"])
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["config.properties"]
    mount = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "model-cache")
    return [str(a) for a in server["command"]], config, mount


def test_torchserve_image_serves_the_handler_on_cpu(
    podman: Podman, torchserve_image: str, containers: list[Container], tmp_path: Path
) -> None:
    size = podman.size_bytes(torchserve_image)
    print(f"\ntorchserve image (CPU stand-in base): {size / 1e6:.0f} MB; builds "
          f"{podman.timings.get(BASE, 0):.0f} s + {podman.timings.get(IMAGE, 0):.0f} s")
    user = podman.run("image", "inspect", torchserve_image, "--format", "{{.Config.User}}").stdout.strip()
    assert user == "model-server"

    command, config, mount = _chart_server()
    assert command[:3] == ["torchserve", "--start", "--foreground"]
    pipeline = build_tiny_sdxl(tmp_path / "sdxl-turbo")
    for path in [pipeline, *pipeline.rglob("*")]:  # readable by the image's model-server user
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tmp_path / "config.properties").write_text(config)
    (tmp_path / "config.properties").chmod(0o644)
    inference, metrics = free_port(), free_port()
    server = start(
        podman, containers, torchserve_image, command, {},
        name=f"torchserve-test-{uuid.uuid4().hex[:8]}",
        volumes=[f"{pipeline}:{mount}/sdxl-turbo:ro",
                 f"{tmp_path / 'config.properties'}:/etc/torchserve/config.properties:ro"],
        ports=[f"127.0.0.1:{inference}:8080", f"127.0.0.1:{metrics}:8082"],
    )
    url = f"http://127.0.0.1:{inference}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ping", timeout=3).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.running(), server.logs()
        time.sleep(1)
    else:
        pytest.fail(f"TorchServe in the image did not become healthy:\n{server.logs()}")

    # the request the image specialist sends (agents/specialists/image, TorchServe backend)
    body = {"prompt": "a red fox in snow", "negative_prompt": "", "num_inference_steps": 1, "seed": 42,
            "width": 64, "height": 64}
    reply = httpx.post(f"{url}/predictions/sdxl_turbo", json=body, timeout=120)
    assert reply.status_code == 200, (reply.text, server.logs())
    assert reply.headers["content-type"].startswith("image/png")
    from PIL import Image

    assert Image.open(io.BytesIO(reply.content)).size == (64, 64)
    bad = httpx.post(f"{url}/predictions/sdxl_turbo", json={**body, "width": 100}, timeout=60)
    assert bad.status_code == 400 and "multiple of 8" in bad.json()["message"]

    status = server.exec("sh", "-c", "id -un; cat /proc/1/status").stdout
    assert status.startswith("model-server") and not re.search(r"^Uid:\s+0\s", status, re.M), status
    scraped = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=10).text
    assert re.search(r'^ts_inference_requests_total\{.*model_name="sdxl_turbo".*\} [1-9]', scraped, re.M), scraped
