"""Run the app's Chainlit server: `python -m chainlit_app.serve --host H --port P` (what `ensemble up`,
the container image and the Helm chart run; `chainlit run chainlit_app/app.py` works too, at ~85 MB more).

It differs from `chainlit run` in two ways. First, asyncio keeps its C tasks and futures: Chainlit's
CLI applies nest_asyncio when imported, so that `cl.run_sync` works when called from a synchronous
callback on the event loop's thread; every Ensemble handler is async and none calls it (nor does
Chainlit itself), and nest_asyncio swaps asyncio's C `Task` and `Future` for the pure-Python ones,
which makes every await and task step of a turn dearer (issue 19). Second, while Chainlit itself is
imported, pandas counts as not installed. Chainlit imports literalai, which imports traceloop-sdk,
whose datasets module imports pandas only to offer `Dataset.from_dataframe` (`try: import pandas ...
except ImportError`), which Ensemble never calls. pandas (and through it pyarrow) is ~85 MB of the
process; it is installed for Milvus Lite, which imports it for real when the document store opens
(rag/store.py), after this.
"""

from __future__ import annotations

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


def main(argv: Sequence[str] | None = None) -> None:
    """`chainlit run chainlit_app/app.py` with these arguments (--host, --port; always headless)."""
    args = list(sys.argv[1:] if argv is None else argv)
    keep_c_tasks()
    if not any(name in sys.modules for name in DEFERRED):
        with optional_imports_deferred():
            import chainlit.cli  # noqa: F401  (Chainlit and its optional imports, without pandas)
    from chainlit.cli import cli

    headless = [] if "--headless" in args else ["--headless"]
    cli(["run", str(APP), *args, *headless], prog_name="chainlit")


if __name__ == "__main__":
    main()
