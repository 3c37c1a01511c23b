"""The running app as a user meets it: `ensemble up`, accounts, and a Chromium page to drive it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import LocalLLMSettings
from tests.conftest import REPO, free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USERS = {"alice": "alice-password-1", "bob": "bob-password-22"}


@dataclass
class RunningApp:
    url: str
    data: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_app(data: Path, llm_port: int, extra_env: dict[str, str] | None = None) -> RunningApp:
    """`ensemble up` as a user runs it (reusing the session's local model server), ready to serve."""
    port = free_port()
    env = {**os.environ, "ENSEMBLE_DATA_DIR": str(data), "ENSEMBLE_LOCAL_LLM__PORT": str(llm_port),
           **(extra_env or {})}
    log = (data / f"app-{port}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "chainlit_app.cli", "up", "--port", str(port)],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return RunningApp(url, data, env, process)
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.terminate()
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in data.glob("app-*.log"))
    pytest.fail(f"the app did not become ready: {logs}")


def create_users(data: Path, env: dict[str, str]) -> None:
    for name, password in USERS.items():
        subprocess.run([sys.executable, "-m", "memory.admin", "create-user", name, "--password-stdin"],
                       input=f"{password}\n".encode(), cwd=REPO, env={**env, "ENSEMBLE_DATA_DIR": str(data)},
                       check=True, capture_output=True)


@pytest.fixture(scope="session")
def app(local_llm: LocalLLMSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    data = tmp_path_factory.mktemp("app-data")
    create_users(data, dict(os.environ))
    running = start_app(data, local_llm.port)
    yield running
    running.stop()


@pytest.fixture(scope="module")  # Playwright's sync API holds an event loop: close it before async tests run
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: install Debian's `chromium` package (scripts/dev test installs it)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(browser: Any, url: str, user: str) -> Any:
    """A fresh browser context signed in as `user`, on the chat page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.locator("#email").fill(user)
    page.locator("#password").fill(USERS[user])
    page.get_by_role("button", name="Sign In").click()
    page.locator("#chat-input").wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")  # the socket session exists (uploads need it)
    return page


def attach(page: Any, files: list[Path]) -> None:
    """Attach files in the composer and wait until each one finished uploading."""
    page.locator("#upload-button-input").set_input_files([str(f) for f in files])
    attachments = page.locator("#attachments")
    images = [f for f in files if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp")]
    for file in files:
        if file not in images:  # images show as thumbnails, without their names
            attachments.get_by_text(file.name).first.wait_for(timeout=30_000)
    if images:
        page.wait_for_function(
            f"() => document.querySelectorAll('#attachments img').length >= {len(images)}", timeout=30_000
        )
    page.wait_for_function(
        "() => !document.querySelector('#attachments [role=progressbar], #attachments .animate-spin')",
        timeout=60_000,
    )
    failed = page.get_by_text("Failed to upload")
    assert failed.count() == 0, failed.first.inner_text()


def send(page: Any, text: str, timeout: float = 120) -> list[int]:
    """Send `text`; wait until the answer is complete. Returns the answer's lengths as it was seen growing."""
    before = page.locator("[data-step-type='assistant_message']").count()
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()
    assistant = page.locator("[data-step-type='assistant_message']")
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if assistant.count() > before:
            lengths.append(len(assistant.last.inner_text()))
            if lengths[-1] > 0 and page.locator("#stop-button").count() == 0:
                break
        time.sleep(0.03)
    page.wait_for_timeout(300)
    return lengths


def last_answer(page: Any) -> str:
    return str(page.locator("[data-step-type='assistant_message']").last.inner_text())


def new_chat(page: Any) -> None:
    page.locator("#new-chat-button").click()
    confirm = page.get_by_role("button", name="Confirm")
    if confirm.count():
        confirm.click()
    page.wait_for_timeout(500)
    page.locator("#chat-input").wait_for()
