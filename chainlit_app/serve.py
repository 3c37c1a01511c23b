"""Run the app's Chainlit server: `python -m chainlit_app.serve --host H --port P` (what `ensemble up`,
the container image and the Helm chart run; `chainlit run chainlit_app/app.py` works too, at ~85 MB and
~20 % more CPU per turn).

It differs from `chainlit run` in three ways (issue 19 measured each, docs/benchmarks.md):
- The event loop is uvloop's (libuv) where it is installed: the turn's wake-ups and socket I/O in C
  (`ENSEMBLE_EVENT_LOOP=asyncio` keeps asyncio's).
- asyncio keeps its C tasks and futures. Chainlit's CLI applies nest_asyncio when imported, so that
  `cl.run_sync` works from a synchronous callback on the event loop's thread; no Ensemble handler (all
  async) and nothing in Chainlit calls it, and nest_asyncio swaps asyncio's C `Task` and `Future` for
  the pure-Python ones, which makes every await of a turn dearer.
- While Chainlit itself is imported, pandas counts as not installed. Chainlit imports literalai, which
  imports traceloop-sdk, whose datasets module imports pandas only to offer `Dataset.from_dataframe`
  (`try: import pandas ... except ImportError`), which Ensemble never calls. pandas (with pyarrow,
  ~85 MB) is installed for Milvus Lite, which imports it for real when the document store opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

APP = Path(__file__).with_name("app.py")
DEFERRED = ("pandas", "pyarrow")  # optional imports of Chainlit's dependencies, loaded later by their real users


class _NotYet(importlib.abc.MetaPathFinder):
    """Makes `import <one of DEFERRED>` raise ImportError, as if it were not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: object | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] in DEFERRED:
            raise ImportError(f"{fullname} is imported later, by its real user", name=fullname)
        return None


@contextlib.contextmanager
def optional_imports_deferred() -> Iterator[None]:
    """While the block runs, the DEFERRED packages cannot be imported (optional imports skip them)."""
    finder = _NotYet()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def keep_c_tasks() -> None:
    """Make nest_asyncio's `apply` (which Chainlit's CLI calls at import) leave asyncio as it is."""
    import nest_asyncio  # type: ignore[import-untyped]

    def apply(loop: object = None) -> None:
        """Not applied: Ensemble never runs a coroutine to completion inside a running loop."""

    nest_asyncio.apply = apply


def use_uvloop() -> bool:
    """Make new event loops libuv's (uvloop), where it is installed (not on Windows); whether it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main(argv: Sequence[str] | None = None) -> None:
    """`chainlit run chainlit_app/app.py` with these arguments (--host, --port; always headless)."""
    args = list(sys.argv[1:] if argv is None else argv)
    keep_c_tasks()
    if not any(name in sys.modules for name in DEFERRED):
        with optional_imports_deferred():
            import chainlit.cli  # noqa: F401  (Chainlit and its optional imports, without pandas)
    from chainlit.cli import cli

    from core.settings import Settings

    if Settings().event_loop == "uvloop":
        use_uvloop()
    headless = [] if "--headless" in args else ["--headless"]
    cli(["run", str(APP), *args, *headless], prog_name="chainlit")


if __name__ == "__main__":
    main()
