"""`python -m chainlit_app.serve`: Chainlit imported without pandas, which its real users still import."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from chainlit_app.serve import optional_imports_deferred
with optional_imports_deferred():
    import chainlit.cli
assert "pandas" not in sys.modules and "pyarrow" not in sys.modules, "Chainlit's import loaded pandas"
import pandas  # its real users (Milvus Lite, the data specialist) import it as usual afterwards
assert pandas.DataFrame({"a": [1]}).shape == (1, 1)
print("ok")
"""


def test_chainlit_is_imported_without_pandas_and_pandas_still_imports_after() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
