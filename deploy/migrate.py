"""Create or upgrade Ensemble's database schemas; run by the chart's PreSync Job before new pods start.

Idempotent: every step is its owner's own `setup()`/`create_all`/`CREATE ... IF NOT EXISTS`.
Steps: the accounts table (accounts.users); when SMOKE_USERNAME/SMOKE_PASSWORD are given, the password
account the PostSync smoke test logs in with (created, or its password reset); Chainlit's chat-history
tables (chainlit_app.persistence); LangGraph's PostgreSQL store (memory) and checkpointer (conversation
state). Settings come from the environment through core.settings, as in the app.
Exit status 0 when every schema is in place, 1 with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

log = logging.getLogger("ensemble.migrate")


async def migrate() -> list[str]:
    from core.settings import Settings

    settings = Settings()
    if settings.database_url is None:
        raise SystemExit("ENSEMBLE_DATABASE_URL is not set: nothing to migrate in a cluster")

    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    from accounts.users import UserStore
    from chainlit_app.persistence import ensure_schema
    from core.databases import history_url, memory_location

    done = []
    users = await UserStore.from_settings(settings)
    try:
        done.append("accounts table")
        smoke_user, smoke_password = os.environ.get("SMOKE_USERNAME"), os.environ.get("SMOKE_PASSWORD")
        if smoke_user and smoke_password:
            if not await users.set_password(smoke_user, smoke_password):
                await users.create_user(smoke_user, smoke_password, display_name="Smoke test")
            done.append("smoke-test account")
    finally:
        await users.aclose()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # where SQLite files go, if any
    await ensure_schema(history_url(settings))
    done.append("chat history")
    location = memory_location(settings)
    if location.backend == "postgres":
        async with AsyncPostgresStore.from_conn_string(location.target) as store:
            await store.setup()
        done.append("memory store")
        async with AsyncPostgresSaver.from_conn_string(location.target) as saver:
            await saver.setup()
        done.append("checkpoints")
    return done


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        done = asyncio.run(migrate())
    except SystemExit:
        raise
    except Exception as exc:  # report any failure as the Job's reason, then fail the sync
        log.error("migration failed: %s: %s", type(exc).__name__, exc)
        return 1
    log.info("schemas ready: %s", ", ".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
