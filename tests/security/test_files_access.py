"""`/files`: a user reads their own chats' files and nothing else, however the path is spelled."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.conftest import RunningApp
from tests.security.conftest import Upload
from tests.support.chat_client import cookie_header, raw_get

pytestmark = [pytest.mark.llm]


async def user_id(client: httpx.AsyncClient) -> str:
    me = await client.get("/user")
    assert me.status_code == 200, me.text
    return str(me.json()["id"])


async def test_owner_reads_own_upload(secure_app: RunningApp, alice: httpx.AsyncClient, alice_upload: Upload) -> None:
    alice_id = await user_id(alice)
    assert alice_upload.object_key.split("/")[0] == alice_id, f"stored under its owner, not {alice_upload.object_key}"
    status, body = await raw_get(secure_app.url, alice_upload.url, cookie_header(alice))
    assert status == 200
    assert body == alice_upload.content
    stored = secure_app.data / "files" / alice_upload.object_key
    assert stored.is_file()
    assert not (secure_app.data / "files" / "unknown").exists(), "nothing is stored without an owner"


async def test_other_users_file_is_not_found(
    secure_app: RunningApp, alice: httpx.AsyncClient, bob: httpx.AsyncClient, anonymous: httpx.AsyncClient,
    bob_upload: Upload,
) -> None:
    status, body = await raw_get(secure_app.url, bob_upload.url, cookie_header(bob))
    assert (status, body) == (200, bob_upload.content), "bob reads his own file"
    status, _ = await raw_get(secure_app.url, bob_upload.url, cookie_header(alice))
    assert status == 404
    status, _ = await raw_get(secure_app.url, bob_upload.url)
    assert status in (401, 404)


def traversals(alice_id: str, bob_key: str, data_dir: str) -> dict[str, str]:
    """Every spelling of "alice's folder, then up, then bob's file" (and a few ways out of the store)."""
    encoded = bob_key.replace("/", "%2f")
    return {
        "plain ..": f"/files/{alice_id}/../{bob_key}",
        "%2e%2e": f"/files/{alice_id}/%2e%2e/{bob_key}",
        "%2E%2E": f"/files/{alice_id}/%2E%2E/{bob_key}",
        "mixed .%2e": f"/files/{alice_id}/.%2e/{bob_key}",
        "%2f separators": f"/files/{alice_id}%2f..%2f{encoded}",
        "..%2f": f"/files/{alice_id}/..%2f{bob_key}",
        "double encoded": f"/files/{alice_id}/%252e%252e/{bob_key}",
        "double encoded slash": f"/files/{alice_id}%252f..%252f{bob_key}",
        "backslashes": f"/files/{alice_id}\\..\\{bob_key.replace('/', chr(92))}",
        "%5c": f"/files/{alice_id}%5c..%5c{bob_key.replace('/', '%5c')}",
        "dot segments": f"/files/{alice_id}/./../{bob_key}",
        "via unknown": f"/files/{alice_id}/../unknown/{bob_key.split('/', 1)[1]}",
        "absolute path": f"/files//{data_dir}/files/{bob_key}",
        "encoded absolute": f"/files/%2f{data_dir.lstrip('/')}/files/{bob_key}",
        "out of the store": f"/files/{alice_id}/../../history.sqlite",
        "etc passwd": f"/files/{alice_id}/../../../../../../../../etc/passwd",
        "NUL byte": f"/files/{alice_id}/%00/../{bob_key}",
    }


@pytest.mark.parametrize("spelling", list(traversals("a", "b/c/d", "/x")))
async def test_traversal_is_not_found(
    spelling: str, secure_app: RunningApp, alice: httpx.AsyncClient, bob_upload: Upload, alice_upload: Upload,
) -> None:
    alice_id = await user_id(alice)
    target = traversals(alice_id, bob_upload.object_key, str(secure_app.data.resolve()))[spelling]
    status, body = await raw_get(secure_app.url, target, cookie_header(alice))
    assert status in (400, 404), f"{spelling}: {target} answered {status}"
    assert bob_upload.content not in body


async def test_symlinks_in_the_store_are_not_followed_out_of_the_owner(
    secure_app: RunningApp, alice: httpx.AsyncClient, bob_upload: Upload, alice_upload: Upload,
) -> None:
    alice_id = await user_id(alice)
    root = secure_app.data / "files"
    folder = root / alice_id / "planted"
    folder.mkdir(parents=True, exist_ok=True)
    links = {
        "to-bob.png": root / bob_upload.object_key,
        "to-passwd": "/etc/passwd",
        "to-history": secure_app.data / "history.sqlite",
    }
    for name, target in links.items():
        (folder / name).unlink(missing_ok=True)
        (folder / name).symlink_to(target)
    (root / alice_id / "bob-dir").unlink(missing_ok=True)
    (root / alice_id / "bob-dir").symlink_to(root / bob_upload.object_key.split("/")[0], target_is_directory=True)
    try:
        for name in links:
            status, _ = await raw_get(secure_app.url, f"/files/{alice_id}/planted/{name}", cookie_header(alice))
            assert status == 404, name
        rest = bob_upload.object_key.split("/", 1)[1]
        status, _ = await raw_get(secure_app.url, f"/files/{alice_id}/bob-dir/{rest}", cookie_header(alice))
        assert status == 404, "a linked folder"
    finally:
        for name in links:
            (folder / name).unlink(missing_ok=True)
        (root / alice_id / "bob-dir").unlink(missing_ok=True)
