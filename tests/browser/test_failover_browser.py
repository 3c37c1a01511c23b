"""Two replicas behind a real load balancer (Debian's HAProxy) with sticky sessions, on one PostgreSQL.

What the ALB does in the cluster: a browser is pinned to one replica by a cookie; when that replica
dies, the balancer sends the browser to another one, and the chat resumes there with its history
(Chainlit's data layer and LangGraph's checkpoints are both in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil
import psycopg
import pytest
from langchain_core.messages import HumanMessage

from agents.runtime import open_checkpointer
from core.settings import LocalLLMSettings, Settings
from tests.browser.conftest import RunningApp, create_users, last_answer, login, send, start_app
from tests.conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.llm, pytest.mark.postgres, pytest.mark.own_app]
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
HAPROXY = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
REPLICA_COOKIE = "ENSEMBLE_REPLICA"
SHARED_SECRET = "failover-test-secret-" + "f" * 40  # every replica signs and checks sessions with one key

# Sticky sessions by an inserted cookie (as the ALB's lb_cookie); health checks on /healthz; a request
# for a dead replica is re-dispatched to a live one. Each response says which replica served it.
HAPROXY_CONFIG = """
global
    maxconn 500
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 300s
    timeout tunnel 1h
    option redispatch
    retries 2
frontend chat
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    cookie {cookie} insert indirect nocache httponly
    option httpchk GET /healthz
    default-server inter 300ms fall 1 rise 2
    http-response set-header X-Replica %s
    server a 127.0.0.1:{port_a} check cookie a
    server b 127.0.0.1:{port_b} check cookie b
"""


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    name = f"ensemble_failover_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for this test: {exc}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def kill_replica(app: RunningApp) -> None:
    """SIGKILL the replica's whole process tree (`ensemble up`, Chainlit, its parser processes): a crash."""
    parent = psutil.Process(app.process.pid)
    tree = [*parent.children(recursive=True), parent]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=30)


def served_by(url: str, cookie: str | None) -> str:
    """The replica that answers a request carrying this replica cookie (none: the balancer picks)."""
    headers = {"Cookie": f"{REPLICA_COOKIE}={cookie}"} if cookie else {}
    response = httpx.get(f"{url}/healthz", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.headers["x-replica"]


def served_by_eventually(url: str, cookie: str | None, balancer: subprocess.Popen[bytes]) -> str | None:
    """`served_by`, or None while the balancer does not listen yet or has no replica to offer."""
    assert balancer.poll() is None, "HAProxy exited"
    try:
        return served_by(url, cookie)
    except (httpx.HTTPError, AssertionError):
        return None


def replica_cookie(page: Any) -> str:
    values = [c["value"] for c in page.context.cookies() if c["name"] == REPLICA_COOKIE]
    assert values, f"the load balancer set no {REPLICA_COOKIE} cookie: {page.context.cookies()}"
    return str(values[0])


async def checkpointed_questions(database_url: str, thread_id: str, data_dir: Path) -> list[str]:
    """The user messages of the chat's LangGraph thread, as any replica reads them from PostgreSQL."""
    settings = Settings(database_url=database_url, data_dir=data_dir)
    async with open_checkpointer(settings) as saver:
        saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
    assert saved is not None, f"no checkpoint for chat {thread_id}"
    messages = saved.checkpoint["channel_values"].get("messages", [])
    return [m.text for m in messages if isinstance(m, HumanMessage)]


def start_replica(data: Path, llm_port: int, env: dict[str, str]) -> RunningApp:
    data.mkdir()
    return start_app(data, llm_port, env)


@pytest.mark.timeout(900)  # two apps start, four answers from the 135M model on a shared machine
def test_chat_resumes_on_the_other_replica_after_one_dies(
    database: str, local_llm: LocalLLMSettings, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    if HAPROXY is None:
        pytest.skip("HAProxy is not installed (scripts/dev test installs Debian's haproxy): apt-get install haproxy")
    shared = {"ENSEMBLE_DATABASE_URL": database, "ENSEMBLE_AUTH__SECRET": SHARED_SECRET}
    create_users(tmp_path, {**os.environ, **shared})
    replicas: dict[str, RunningApp] = {}
    balancer: subprocess.Popen[bytes] | None = None
    try:
        # each replica has its own data dir (its own disk); PostgreSQL is shared. Started side by side.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            starting = {
                name: pool.submit(start_replica, tmp_path / f"replica-{name}", local_llm.port, shared)
                for name in ("a", "b")
            }
            replicas.update({name: future.result() for name, future in starting.items()})
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            HAPROXY_CONFIG.format(
                port=port,
                cookie=REPLICA_COOKIE,
                port_a=urlparse(replicas["a"].url).port,
                port_b=urlparse(replicas["b"].url).port,
            )
        )
        check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        balancer = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=(tmp_path / "haproxy.log").open("wb")
        )
        lb = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while {served_by_eventually(lb, None, balancer) for _ in range(4)} != {"a", "b"}:  # both up behind it
            assert time.monotonic() < deadline, "HAProxy never saw both replicas healthy"
            time.sleep(0.5)

        page = login(browser, lb, "alice")
        first = replica_cookie(page)
        assert all(served_by(lb, first) == first for _ in range(6)), "the cookie pins a browser to one replica"
        send(page, "/code Write a Python function named triple that multiplies by three.")
        assert "triple" in last_answer(page)
        page.wait_for_url("**/thread/**", timeout=10_000)
        thread_path = urlparse(page.url).path
        thread_id = thread_path.rstrip("/").rsplit("/", 1)[1]
        assert replica_cookie(page) == first

        kill_replica(replicas.pop(first))  # the replica that holds the browser's session dies
        other = "b" if first == "a" else "a"
        deadline = time.monotonic() + 30
        # the balancer sends that cookie elsewhere once its health check sees the replica dead
        while served_by_eventually(lb, first, balancer) != other:
            assert time.monotonic() < deadline, "HAProxy kept sending the browser to the dead replica"
            time.sleep(0.3)

        page.goto(lb + thread_path)  # the same browser, its cookies as they were, resumes the chat
        page.wait_for_load_state("networkidle")
        page.get_by_text("Write a Python function named triple").first.wait_for(timeout=30_000)
        assert replica_cookie(page) == other, "the balancer re-pinned the browser to the live replica"
        send(page, "/code Now write a function named quadruple.")
        assert "quadruple" in last_answer(page)
        page.reload()
        page.wait_for_load_state("networkidle")
        page.get_by_text("Now write a function named quadruple").first.wait_for(timeout=30_000)
        body = page.locator("body").inner_text()
        assert "Write a Python function named triple" in body, "the first turn is still in the chat"
        page.screenshot(path=str(artifacts_dir / "browser-failover.png"))
        page.context.close()

        wanted = [
            "/code Write a Python function named triple that multiplies by three.",
            "/code Now write a function named quadruple.",
        ]
        questions: list[str] = []
        deadline = time.monotonic() + 30
        while questions != wanted and time.monotonic() < deadline:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's loop
                reading = checkpointed_questions(database, thread_id, tmp_path / "reader")
                questions = pool.submit(asyncio.run, reading).result(timeout=60)
            time.sleep(0.0 if questions == wanted else 1.0)
        assert questions == wanted, (
            f"the agent's own history of chat {thread_id} (LangGraph thread, read from PostgreSQL) holds both "
            f"turns, in order; it holds {questions}"
        )
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(timeout=10)
        for app in replicas.values():
            app.stop()
