"""`python -m chainlit_app.serve`: Chainlit imported without pandas (which its real users still import),
asyncio left with its C tasks and futures, on uvloop."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import asyncio, sys
from chainlit_app.serve import keep_c_tasks, optional_imports_deferred, use_uvloop
keep_c_tasks()
assert use_uvloop() and type(asyncio.new_event_loop()).__module__.startswith("uvloop"), "not on uvloop"
with optional_imports_deferred():
    import chainlit.cli
assert "pandas" not in sys.modules and "pyarrow" not in sys.modules, "Chainlit's import loaded pandas"
assert asyncio.Task is asyncio.tasks._CTask and asyncio.Future is asyncio.futures._CFuture, "nest_asyncio applied"
import pandas  # its real users (Milvus Lite, the data specialist) import it as usual afterwards
assert pandas.DataFrame({"a": [1]}).shape == (1, 1)
print("ok")
"""


def test_chainlit_is_imported_without_pandas_or_nest_asyncio_and_pandas_still_imports_after() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
