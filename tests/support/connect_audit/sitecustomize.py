"""Loaded by a test's app process (this folder on PYTHONPATH): logs every outbound connection it opens.

Python's audit events `socket.connect` and `socket.getaddrinfo` fire for every connection and name
lookup, whichever library makes them; each becomes a line in the file named by CONNECT_AUDIT_LOG.
"""

import os
import sys
from pathlib import Path

_LOG = os.environ.get("CONNECT_AUDIT_LOG")

if _LOG:

    def _audit(event: str, args: tuple) -> None:
        if event == "socket.connect":
            line = f"connect {args[1]!r}\n"
        elif event == "socket.getaddrinfo":
            line = f"resolve {args[0]!r} {args[1]!r}\n"
        else:
            return
        with Path(_LOG).open("a", encoding="utf-8") as log:
            log.write(line)

    sys.addaudithook(_audit)
