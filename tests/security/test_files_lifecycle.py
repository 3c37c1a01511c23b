"""An owner's files across a restart and a resume, files stored by older versions under `unknown/`,
and a deleted chat taking its files with it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import start_app
from tests.security.conftest import USERS, create_users, png_bytes, share_file
from tests.support.chat_client import ChatSocket, cookie_header, raw_get, signed_in

pytestmark = [pytest.mark.llm]


def relabel_as_unowned(data: Path, element_id: str, key: str) -> str:
    """Put a stored file back where Chainlit used to put it (`unknown/...`), as an old deployment has it."""
    unowned = "unknown/" + key.split("/", 1)[1]
    (data / "files" / unowned).parent.mkdir(parents=True, exist_ok=True)
    (data / "files" / key).replace(data / "files" / unowned)
    with sqlite3.connect(data / "history.sqlite") as db:
        db.execute('UPDATE elements SET "objectKey" = ?, "url" = ? WHERE "id" = ?',
                   (unowned, f"/files/{unowned}", element_id))
    return unowned


@pytest.mark.own_app
async def test_files_survive_restart_and_resume_and_go_with_their_chat(
    local_llm: LocalLLMSettings, tmp_path: Path
) -> None:
    create_users(tmp_path, dict(os.environ), ("alice", "bob"))
    app = start_app(tmp_path, local_llm.port)
    try:
        alice = await signed_in(app.url, "alice", USERS["alice"])
        kept = await share_file(app, alice, "kept.png", png_bytes((1, 2, 3)))
        old = await share_file(app, alice, "from-an-old-version.png", png_bytes((4, 5, 6)))
        await alice.aclose()
    finally:
        app.stop()
    unowned = relabel_as_unowned(tmp_path, old.element_id, old.object_key)
    assert (tmp_path / "files" / unowned).is_file()

    app = start_app(tmp_path, local_llm.port)  # a new process: nothing of the old one is left in memory
    try:
        alice = await signed_in(app.url, "alice", USERS["alice"])
        bob = await signed_in(app.url, "bob", USERS["bob"])
        chat = ChatSocket(app.url, alice, thread_id=kept.thread_id)  # resume the chat
        await chat.connect()
        resumed = await chat.wait_event("resume_thread")
        await chat.close()
        assert any(e["id"] == kept.element_id for e in resumed["elements"])
        for upload in (kept, old):
            thread = (await alice.get(f"/project/thread/{upload.thread_id}")).json()
            url = next(e["url"] for e in thread["elements"] if e["id"] == upload.element_id)
            assert not url.startswith("/files/unknown/"), "adopted by its owner at startup"
            status, body = await raw_get(app.url, url, cookie_header(alice))
            assert (status, body) == (200, upload.content), url
            assert (await raw_get(app.url, url, cookie_header(bob)))[0] == 404
        assert not (tmp_path / "files" / unowned).exists()

        stored = tmp_path / "files" / kept.object_key
        uploads = list((tmp_path / "uploads").rglob(f"{kept.element_id}-*"))
        assert stored.is_file() and uploads, "the element and the copy the agents read"
        deleted = await alice.request("DELETE", "/project/thread", json={"threadId": kept.thread_id})
        assert deleted.status_code == 200
        assert not stored.exists() and not stored.parent.exists()
        assert not any(path.exists() for path in uploads)
        assert (await raw_get(app.url, kept.url, cookie_header(alice)))[0] == 404
        await alice.aclose()
        await bob.aclose()
    finally:
        app.stop()
