"""How Ensemble's console commands end: a refused request prints `prog: reason` and exits 1; Ctrl-C exits 130."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_console(prog: str, work: Callable[[], int], refused: tuple[type[Exception], ...]) -> int:
    """Run a command's `work` and return its exit status; `refused` are the errors a user reads as a reason."""
    try:
        return work()
    except refused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
