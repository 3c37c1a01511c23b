"""The element store: keys that cannot leave their owner's folder, and the data layer's ownership rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chainlit_app.persistence import EnsembleDataLayer, LocalStorageClient, ensure_schema, valid_key

ALICE, BOB = "7f6b1e52-0000-4000-8000-00000000a11c", "7f6b1e52-0000-4000-8000-000000000b0b"
ELEMENT = "e1e1e1e1-0000-4000-8000-000000000001"


@pytest.mark.parametrize("key", [
    f"{ALICE}/{ELEMENT}/photo.png",
    f"{ALICE}/{ELEMENT}/report.v2.pdf",
])
def test_plain_keys_are_valid(key: str) -> None:
    assert valid_key(key)


@pytest.mark.parametrize("key", [
    f"{ALICE}/../{BOB}/{ELEMENT}/photo.png", f"{ALICE}/{ELEMENT}/..", f"{ALICE}/./photo.png",
    f"/{ALICE}/{ELEMENT}/photo.png", f"{ALICE}//{ELEMENT}/photo.png", f"{ALICE}/{ELEMENT}/a/b.png",
    f"{ALICE}\\..\\{BOB}/x/y", f"{ALICE}/{ELEMENT}/photo\x00.png", f"{ALICE}/{ELEMENT}/.hidden",
    f"{ALICE}/{ELEMENT}", "", f"{ALICE}/{ELEMENT}/%2e%2e",
])
def test_anything_else_is_not(key: str) -> None:
    assert not valid_key(key)


async def test_uploads_are_stored_under_their_owner_with_a_plain_name(tmp_path: Path) -> None:
    store = LocalStorageClient(tmp_path)
    stored = await store.upload_file(f"{ALICE}/{ELEMENT}/../../{BOB}/evil name.png", b"png")
    assert stored["object_key"] == f"{ALICE}/{ELEMENT}/BOB_evil_name.png".replace("BOB", BOB)
    assert (tmp_path / stored["object_key"]).read_bytes() == b"png"
    assert not (tmp_path / BOB).exists()
    assert await store.upload_file(f"unknown/{ELEMENT}/photo.png", b"png") == {}, "never without an owner"
    assert store.owned_file(stored["object_key"], ALICE) is not None
    assert store.owned_file(stored["object_key"], BOB) is None
    assert await store.delete_file(stored["object_key"])
    assert not (tmp_path / ALICE / ELEMENT).exists(), "the element's folder goes with its file"


async def test_symlinks_count_where_they_lead(tmp_path: Path) -> None:
    store = LocalStorageClient(tmp_path)
    bobs = await store.upload_file(f"{BOB}/{ELEMENT}/secret.png", b"bob")
    (tmp_path / ALICE / ELEMENT).mkdir(parents=True)
    (tmp_path / ALICE / ELEMENT / "link.png").symlink_to(tmp_path / bobs["object_key"])
    assert store.owned_file(f"{ALICE}/{ELEMENT}/link.png", ALICE) is None
    (tmp_path / ALICE / "bobs-folder").symlink_to(tmp_path / BOB, target_is_directory=True)
    assert store.path_for(f"{ALICE}/bobs-folder/{ELEMENT}") is None


async def test_files_left_under_unknown_are_given_to_their_chats_author(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'history.sqlite'}"
    await ensure_schema(url)
    store = LocalStorageClient(tmp_path / "files")
    old_key = f"unknown/{ELEMENT}/photo.png"
    (tmp_path / "files" / "unknown" / ELEMENT).mkdir(parents=True)
    (tmp_path / "files" / old_key).write_bytes(b"png")
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        db.execute('INSERT INTO users ("id", "identifier", "metadata") VALUES (?, ?, ?)', (ALICE, "alice", "{}"))
        db.execute('INSERT INTO threads ("id", "userId", "userIdentifier") VALUES (?, ?, ?)', ("t1", ALICE, "alice"))
        db.execute('INSERT INTO elements ("id", "threadId", "name", "objectKey", "url") VALUES (?, ?, ?, ?, ?)',
                   (ELEMENT, "t1", "photo.png", old_key, f"/files/{old_key}"))
    layer = EnsembleDataLayer(url, store)
    try:
        assert await layer.adopt_unowned_files(store) == 1
        assert await layer.adopt_unowned_files(store) == 0, "idempotent"
    finally:
        await layer.engine.dispose()
    new_key = f"{ALICE}/{ELEMENT}/photo.png"
    assert (tmp_path / "files" / new_key).read_bytes() == b"png"
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute('SELECT "objectKey", "url" FROM elements').fetchone() == (new_key, f"/files/{new_key}")


async def test_a_chats_author_never_changes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'history.sqlite'}"
    await ensure_schema(url)
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        for user, name in ((ALICE, "alice"), (BOB, "bob")):
            db.execute('INSERT INTO users ("id", "identifier", "metadata") VALUES (?, ?, ?)', (user, name, "{}"))
    layer = EnsembleDataLayer(url, LocalStorageClient(tmp_path / "files"))
    try:
        await layer.update_thread("t1", name="alice's chat", user_id=ALICE)
        await layer.update_thread("t1", name="taken", user_id=BOB)
        assert await layer.thread_user_id("t1") == ALICE
        assert await layer.get_thread_author("t1") == "alice"
        assert await layer.get_thread_author("no-such-chat") == "", "a 404 for an unknown chat, not a 500"
    finally:
        await layer.engine.dispose()
