"""The production app image, built from the repository's Dockerfile and run as the cluster runs it.

Built `FROM` a Debian base made here (the Dockerfile's `ARG BASE`), then: the PreSync migration script
runs in the image against the machine's PostgreSQL, the app starts as its non-root user with the
chart's settings pointed at real local servers, and a client speaking Chainlit's own protocol logs in,
chats, uploads a PDF and gets an answer citing its page; `/metrics` is scraped afterwards.

Model servers: the suite's llama.cpp server on SmolLM2-135M answers the chat, and a second llama.cpp
server on the same GGUF serves OpenAI-compatible `/v1/embeddings` (mean-pooled; `--embedding` with
the GGUF's pooling type overridden), so the image's documents room embeds over HTTP as it does in the
cluster, where the image has no local embedding model.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.local_llm import default_model_path
from core.settings import LocalLLMSettings
from tests.conftest import REPO, free_port
from tests.container.conftest import Container, Podman, start
from tests.rag.conftest import make_pdf

psycopg = pytest.importorskip("psycopg")
# a cold build (dependencies from PyPI, 2 shared cores) takes minutes: more than the suite's 300 s
pytestmark = [pytest.mark.timeout(2400), pytest.mark.container, pytest.mark.llm, pytest.mark.postgres]

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
IMAGE = "localhost/ensemble:test"
SMOKE_USER, SMOKE_PASSWORD = "smoke-test", "smoke-password-123"
FILLER = ("The committee met in the spring and reviewed the general budget, the building plans and the "
          "schedule of the annual garden fair. Minutes were taken and approved without changes.")

sys.path.insert(0, str(REPO / "deploy"))
import smoke_chat  # noqa: E402  (deploy/smoke_chat.py: the PostSync Job's client, also in the image)


@pytest.fixture(scope="module")
def app_image(podman: Podman, debian_base: str) -> str:
    podman.build(REPO, IMAGE, build_args={"BASE": debian_base})
    return IMAGE


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on SmolLM2 in embedding mode, mean-pooled."""
    port = free_port()
    log = (tmp_path_factory.mktemp("embed") / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
         "--model_alias", "smollm2-embed", "--embedding", "true",
         "--kv_overrides", "llama.pooling_type=int:1",  # 1 = mean (the GGUF declares none: one vector per token)
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{url}/embeddings", json={"input": ["probe"], "model": "smollm2-embed"}, timeout=5)
                if r.status_code == 200:
                    assert len(r.json()["data"][0]["embedding"]) == 576, "one pooled vector per input"
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the embedding server exited"
            time.sleep(0.5)
        else:
            pytest.fail("the embedding server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def scratch_db() -> Iterator[str]:
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    name = f"ensemble_image_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _settings(local_llm: LocalLLMSettings, embeddings: str, database: str) -> dict[str, str]:
    """What the chart's ConfigMap and Secret give the pod, pointed at this machine's servers."""
    return {
        "ENSEMBLE_AUTH__MODE": "password",
        "ENSEMBLE_AUTH__FIRST_LOGIN_CREATES_ACCOUNT": "false",
        "ENSEMBLE_AUTH__SECRET": "s" * 64,
        "CHAINLIT_AUTH_SECRET": "s" * 64,
        "ENSEMBLE_DATABASE_URL": database,
        "ENSEMBLE_SUPERVISOR__BASE_URL": local_llm.base_url,
        "ENSEMBLE_SUPERVISOR__MODEL": local_llm.model_alias,
        "ENSEMBLE_SUPERVISOR__API_KEY": "local",
        "ENSEMBLE_SUPERVISOR__STRUCTURED_OUTPUT": "json_object",
        "ENSEMBLE_SUPERVISOR__MAX_TOKENS": "256",
        # two shared cores, other test suites running: the default 60 s is too short under load
        "ENSEMBLE_SUPERVISOR__TIMEOUT": "300",
        "ENSEMBLE_EMBEDDINGS__TIMEOUT": "120",
        "ENSEMBLE_EMBEDDINGS__BACKEND": "openai",
        "ENSEMBLE_EMBEDDINGS__BASE_URL": embeddings,
        "ENSEMBLE_EMBEDDINGS__MODEL": "smollm2-embed",
        "ENSEMBLE_MEMORY__ENABLED": "false",
        "SMOKE_USERNAME": SMOKE_USER,
        "SMOKE_PASSWORD": SMOKE_PASSWORD,
    }


def _wait_ready(app: Container, url: str, limit: float = 240) -> None:
    """/readyz answers 200 and the documents store (Milvus Lite, opened in the background) is open."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=3)
            if ready.status_code == 200 and ready.json()["specialists"].get("documents") == "ready":
                return
        except httpx.HTTPError:
            pass
        if not app.running():
            break
        time.sleep(1)
    pytest.fail(f"the app in the image did not become ready:\n{app.logs()}")


def _turn(url: str, text: str, files: list[tuple[Path, str]] | None = None,
          steps: list[dict] | None = None) -> str:
    async def run() -> str:
        cookie = await smoke_chat.login_cookie(url, "password", None)
        return await smoke_chat.chat_turn(url, cookie, text, 240, files or [], steps)

    env = {"SMOKE_USERNAME": SMOKE_USER, "SMOKE_PASSWORD": SMOKE_PASSWORD}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return asyncio.run(run())
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_app_image_serves_chat_documents_and_metrics_as_non_root(
    podman: Podman, app_image: str, local_llm: LocalLLMSettings, embedding_server: str, scratch_db: str,
    containers: list[Container], tmp_path: Path,
) -> None:
    size = podman.size_bytes(app_image)
    print(f"\napp image: {size / 1e6:.0f} MB; build {podman.timings.get(IMAGE, 0):.0f} s "
          f"(base {podman.timings.get('localhost/debian-python:bookworm', 0):.0f} s when made)")
    config = podman.run("image", "inspect", app_image, "--format", "{{.Config.User}}|{{json .Config.Cmd}}").stdout
    user, _, cmd = config.strip().partition("|")
    assert user == "10001:10001", user
    assert '"python","-m","chainlit_app.serve"' in cmd.replace(" ", ""), cmd

    env = _settings(local_llm, embedding_server, scratch_db)
    # the chart's PreSync Job: schemas and the smoke-test account, from the image itself
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    migrate = podman.run("run", "--rm", "--network", "host", *env_args, app_image,
                         "python", "/app/deploy/migrate.py", timeout=180, check=False)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "smoke-test account" in migrate.stdout + migrate.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = start(podman, containers, app_image,
                ["python", "-m", "chainlit_app.serve", "--host", "127.0.0.1", "--port", str(port)],
                env, name=f"ensemble-test-{uuid.uuid4().hex[:8]}")
    _wait_ready(app, url)
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["specialists"]["documents"] == "ready", ready
    assert app.exec("id", "-u").stdout.strip() == "10001"
    status = app.exec("cat", "/proc/1/status").stdout  # the server process itself
    assert re.search(r"^Uid:\s+10001\s", status, re.M), status

    # a login and a chat turn, exactly as the PostSync smoke test sends it
    reply = _turn(url, "Reply with the single word: pong")
    assert reply.strip() and "**Error:**" not in reply, (reply, app.logs())

    # a PDF upload: parsed in the image (unstructured + PDFium from the `docs` extra), embedded over HTTP,
    # and the answer cites the file and the page the fact is on
    pdf = make_pdf(tmp_path / "harbour-report.pdf", [
        ("Introduction", [FILLER]),
        ("Lighthouse", ["The old lighthouse on Gull Point was repainted cobalt blue in 1987 by the harbour "
                        "board, after a public vote.", FILLER]),
        ("Closing", [FILLER]),
    ])
    steps: list[dict] = []
    answer = _turn(url, "/docs What colour was the lighthouse on Gull Point painted?",
                   [(pdf, "application/pdf")], steps)
    reading = [s for s in steps if str(s.get("name", "")).startswith("Reading harbour-report.pdf")]
    assert reading and not any(s.get("isError") for s in reading), (steps, app.logs())
    assert re.search(r"\[\d+\] harbour-report\.pdf, pp?\. ?(\d+–)?2\b", answer, re.I), (answer, app.logs())

    # what Prometheus scrapes from the pod: the two turns, their routing, time to first token, circuits
    metrics = httpx.get(f"{url}/metrics", timeout=5)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    # not for the public: through the ALB (which always adds X-Forwarded-For) it is a 404
    assert httpx.get(f"{url}/metrics", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=5).status_code == 404
    assert re.search(r'^ensemble_turns_total\{outcome="finished"\} 2\.0$', text, re.M), text
    routes = dict(re.findall(r'^ensemble_routing_decisions_total\{specialist="([^"]+)"\} (\S+)$', text, re.M))
    assert float(routes.get("documents", 0)) >= 1 and sum(map(float, routes.values())) >= 2, text
    assert re.search(r"^ensemble_time_to_first_token_seconds_count [12]\.0$", text, re.M), text
    assert re.search(r'^ensemble_specialist_duration_seconds_count\{specialist="documents"\} [1-9]\d*\.0$', text, re.M)
    assert re.search(r'^ensemble_model_circuit_state\{model="supervisor",state="closed"\} 1\.0$', text, re.M)
