"""`ensemble`: start the app (and the embedded model server when no LLM is configured)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
from pathlib import Path

from core.console import run_console
from core.errors import EnsembleError
from core.local_llm import LocalLLMServer
from core.settings import Settings, child_environment

APP = Path(__file__).with_name("app.py")


def auth_secret(settings: Settings) -> str:
    """The secret that signs login sessions: ENSEMBLE_AUTH__SECRET, else one kept in the data dir."""
    if settings.auth.secret is not None:
        return settings.auth.secret.get_secret_value()
    path = settings.data_dir / ".auth-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


async def _up(host: str, port: int, with_local_llm: bool) -> int:
    """Run the Chainlit app; the app itself starts and supervises the embedded model server."""
    settings = Settings()
    command = [sys.executable, "-m", "chainlit_app.serve", "--host", host, "--port", str(port)]
    extra = {"CHAINLIT_AUTH_SECRET": auth_secret(settings)}
    if not with_local_llm:
        extra["ENSEMBLE_LOCAL_LLM__ENABLED"] = "off"
    elif settings.local_llm_active:
        print(f"The embedded model server (SmolLM2-135M) will serve at {settings.local_llm.base_url}; "
              f"its log: {settings.data_dir / 'local-llm.log'}")
    print(f"Ensemble is starting at http://{host}:{port}")
    app = await asyncio.create_subprocess_exec(*command, cwd=str(APP.parent.parent), env=child_environment(**extra))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.terminate)
    return await app.wait()


async def _local_llm() -> int:
    settings = Settings()
    async with LocalLLMServer(settings.local_llm, settings.data_dir / "local-llm.log") as server:
        print(f"Embedded model server ready at {server.base_url} (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ensemble", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the chat app (and the embedded model server if no LLM is configured)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--no-local-llm", action="store_true", help="never start the embedded model server")
    sub.add_parser("local-llm", help="run only the embedded model server")
    args = parser.parse_args(argv)
    if args.command == "up":
        return run_console("ensemble", lambda: asyncio.run(_up(args.host, args.port, not args.no_local_llm)),
                           (EnsembleError,))
    return run_console("ensemble", lambda: asyncio.run(_local_llm()), (EnsembleError,))


if __name__ == "__main__":
    sys.exit(main())
