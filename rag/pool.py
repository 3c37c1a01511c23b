"""A pool of parser processes, so that CPU-bound parsing never blocks the event loop or the GIL.

Processes are spawned (not forked: the parent holds gRPC and torch threads) and set up once by
`rag.parsing.worker_init`. A task that outlives its deadline, or a worker that dies (a crash inside a
native parser), replaces the whole pool so that other users' uploads keep being served.
As with any spawn-based pool, the program's main module must be import-safe (`if __name__ == "__main__":`);
console scripts, `python -m chainlit_app.serve`, `chainlit run` and pytest are.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from rag import parsing
from rag.errors import DocumentRejected

log = logging.getLogger(__name__)
T = TypeVar("T")


class ParserPool:
    """`run(fn, *args)` in a parser process; `restart()` replaces the processes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=parsing.worker_init,
        )

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Schedule `fn(*args)` in a parser process; the asyncio future can be cancelled while queued."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any, name: str = "the file") -> T:
        try:
            return await self.submit(fn, *args)
        except BrokenProcessPool as exc:
            self.restart()
            raise DocumentRejected(f"The parser crashed on “{name}”; the file may be damaged.") from exc

    def warm(self) -> list[asyncio.Future[bool]]:
        """Start the processes and load their NLP model now, in the background."""
        return [self.submit(parsing.warm_up) for _ in range(self.workers)]

    def restart(self) -> None:
        """Kill the processes (a runaway or crashed parse) and start fresh ones."""
        old, self._executor = self._executor, self._new()
        processes = list(getattr(old, "_processes", {}).values())  # no public API to kill workers
        old.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        log.warning("parser processes restarted")

    def close(self) -> None:
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
