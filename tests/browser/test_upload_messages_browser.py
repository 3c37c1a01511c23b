"""Uploads the app cannot use get a message in the chat saying why, not a silent failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tests.browser.conftest import RunningApp, attach, login, new_chat, send


def test_an_empty_file_is_named_in_the_chat(app: RunningApp, browser: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty-notes.txt"
    empty.write_bytes(b"")
    page = login(browser, app.url, "alice")
    try:
        new_chat(page)
        attach(page, [empty])  # fails on Chainlit's "Failed to upload"
        send(page, "What is in this file?")
        notice = page.get_by_text("“empty-notes.txt” is empty (0 bytes)")
        notice.first.wait_for(timeout=30_000)
    finally:
        page.context.close()


def test_an_image_without_a_vision_server_is_named_in_the_chat(
    app: RunningApp, browser: Any, tmp_path: Path
) -> None:
    picture = tmp_path / "harbour.png"
    Image.new("RGB", (64, 48), (20, 90, 160)).save(picture)
    page = login(browser, app.url, "alice")
    try:
        new_chat(page)
        attach(page, [picture])
        send(page, "What do you see in this picture?")
        notice = page.get_by_text("cannot look at images in this deployment")
        notice.first.wait_for(timeout=30_000)
        assert "ENSEMBLE_VISION__BASE_URL" in notice.first.inner_text()
    finally:
        page.context.close()
