"""Every route and socket event the app adds or relies on, for two users and an anonymous client:
what should be refused is refused, and what the owner does still works.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import socketio

from tests.browser.conftest import RunningApp
from tests.security.conftest import Upload, share_file
from tests.support.chat_client import ChatSocket, cookie_header, raw_get

pytestmark = [pytest.mark.llm]
REFUSED = (401, 403, 404)


async def thread_json(client: httpx.AsyncClient, thread_id: str) -> dict[str, Any]:
    response = await client.get(f"/project/thread/{thread_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step_of(thread: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(s for s in thread["steps"] if s["type"] == kind)


async def test_anonymous_client_is_refused_everywhere(
    secure_app: RunningApp, anonymous: httpx.AsyncClient, alice_upload: Upload
) -> None:
    thread = alice_upload.thread_id
    requests = [
        ("GET", "/user", None),
        ("POST", "/project/threads", {"pagination": {"first": 20}, "filter": {}}),
        ("GET", f"/project/thread/{thread}", None),
        ("GET", f"/project/thread/{thread}/element/{alice_upload.element_id}", None),
        ("PUT", "/project/thread", {"threadId": thread, "name": "renamed by nobody"}),
        ("DELETE", "/project/thread", {"threadId": thread}),
        ("PUT", "/feedback", {"feedback": {"forId": str(uuid.uuid4()), "value": 1}, "sessionId": "x"}),
        ("DELETE", "/feedback", {"feedbackId": str(uuid.uuid4())}),
        ("GET", alice_upload.url, None),
        ("GET", f"/project/share/{thread}", None),
    ]
    for method, path, body in requests:
        response = await anonymous.request(method, path, json=body)
        assert response.status_code in REFUSED, f"{method} {path}: {response.status_code} {response.text[:200]}"
    upload = await anonymous.post("/project/file", params={"session_id": str(uuid.uuid4())},
                                  files={"file": ("x.txt", b"hello", "text/plain")})
    assert upload.status_code in REFUSED
    chat = ChatSocket(secure_app.url, None)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await chat.connect()
    # what stays public: liveness and readiness (without secrets), the login page's configuration
    for path in ("/healthz", "/readyz", "/auth/config"):
        assert (await anonymous.get(path)).status_code == 200, path


async def test_readyz_names_no_secret(anonymous: httpx.AsyncClient) -> None:
    body = (await anonymous.get("/readyz")).text
    assert "image" in body
    assert "image-key-that-must-not-leak" not in body
    assert "password" not in body.lower()


async def test_threads_of_another_user_are_out_of_reach(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, alice_upload: Upload, bob_upload: Upload
) -> None:
    alice_id = (await alice.get("/user")).json()["id"]
    for page_filter in ({}, {"userId": alice_id}):  # the user id in the request is not believed
        listed = await bob.post("/project/threads", json={"pagination": {"first": 50}, "filter": page_filter})
        assert listed.status_code == 200
        ids = {t["id"] for t in listed.json()["data"]}
        assert bob_upload.thread_id in ids and alice_upload.thread_id not in ids

    thread = alice_upload.thread_id
    assert (await bob.get(f"/project/thread/{thread}")).status_code in REFUSED
    assert (await bob.get(f"/project/thread/{thread}/element/{alice_upload.element_id}")).status_code in REFUSED
    # alice's element asked for through bob's own chat: nothing
    through_own = await bob.get(f"/project/thread/{bob_upload.thread_id}/element/{alice_upload.element_id}")
    assert through_own.status_code in REFUSED or through_own.json() is None
    renamed = await bob.put("/project/thread", json={"threadId": thread, "name": "bob was here"})
    assert renamed.status_code in REFUSED
    deleted = await bob.request("DELETE", "/project/thread", json={"threadId": thread})
    assert deleted.status_code in REFUSED
    kept = await thread_json(alice, thread)
    assert kept["name"] != "bob was here"
    assert any(e["id"] == alice_upload.element_id for e in kept["elements"])


async def test_sharing_is_off(alice: httpx.AsyncClient, anonymous: httpx.AsyncClient, alice_upload: Upload) -> None:
    shared = await alice.put("/project/thread/share", json={"threadId": alice_upload.thread_id, "isShared": True})
    assert shared.status_code == 404
    assert (await anonymous.get(f"/project/share/{alice_upload.thread_id}")).status_code == 404
    metadata = (await thread_json(alice, alice_upload.thread_id)).get("metadata") or {}
    assert not (isinstance(metadata, dict) and metadata.get("is_shared"))


async def test_feedback_only_on_own_messages(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, alice_upload: Upload, bob_upload: Upload
) -> None:
    alice_thread = await thread_json(alice, alice_upload.thread_id)
    alice_step = step_of(alice_thread, "assistant_message")["id"]
    bob_step = step_of(await thread_json(bob, bob_upload.thread_id), "assistant_message")["id"]

    given = await alice.put("/feedback", json={"feedback": {"forId": alice_step, "value": 1, "comment": "good"},
                                              "sessionId": "s"})
    assert given.status_code == 200, given.text
    feedback_id = given.json()["feedbackId"]

    on_alice = await bob.put("/feedback", json={"feedback": {"forId": alice_step, "value": 0,
                                                             "threadId": bob_upload.thread_id}, "sessionId": "s"})
    assert on_alice.status_code == 404
    hijack = await bob.put("/feedback", json={"feedback": {"id": feedback_id, "forId": bob_step, "value": 0},
                                              "sessionId": "s"})
    assert hijack.status_code == 404
    removed = await bob.request("DELETE", "/feedback", json={"feedbackId": feedback_id})
    assert removed.status_code == 404

    step = next(s for s in (await thread_json(alice, alice_upload.thread_id))["steps"] if s["id"] == alice_step)
    assert step["feedback"]["id"] == feedback_id and step["feedback"]["value"] == 1
    assert (await alice.request("DELETE", "/feedback", json={"feedbackId": feedback_id})).status_code == 200


async def test_elements_of_another_users_chat_cannot_be_added_or_removed(
    secure_app: RunningApp, alice: httpx.AsyncClient, bob: httpx.AsyncClient, alice_upload: Upload,
    bob_upload: Upload,
) -> None:
    alice_step = step_of(await thread_json(alice, alice_upload.thread_id), "assistant_message")["id"]
    chat = ChatSocket(secure_app.url, bob)
    await chat.connect()
    try:
        await chat.send("/memory")  # the session has interacted: Chainlit writes at once, no queue
        injected = str(uuid.uuid4())
        added = await bob.put("/project/element", json={"sessionId": chat.session_id, "element": {
            "type": "custom", "id": injected, "threadId": alice_upload.thread_id, "forId": alice_step,
            "name": "Injected", "props": {"text": "from bob"}, "display": "inline"}})
        assert added.status_code in (200, *REFUSED)
        removed = await bob.request("DELETE", "/project/element", json={"sessionId": chat.session_id, "element": {
            "type": "custom", "id": alice_upload.element_id, "threadId": bob_upload.thread_id, "forId": "",
            "name": alice_upload.name, "props": {}, "display": "inline"}})
        assert removed.status_code in (200, *REFUSED)
        await asyncio.sleep(2)  # Chainlit stores elements in background tasks
    finally:
        await chat.close()
    elements = {e["id"] for e in (await thread_json(alice, alice_upload.thread_id))["elements"]}
    assert injected not in elements
    assert alice_upload.element_id in elements
    assert (secure_app.data / "files" / alice_upload.object_key).is_file()


async def test_socket_sessions_and_threads_of_another_user(
    secure_app: RunningApp, alice: httpx.AsyncClient, bob: httpx.AsyncClient, alice_upload: Upload
) -> None:
    # bob cannot open alice's chat in his socket session
    resume = ChatSocket(secure_app.url, bob, thread_id=alice_upload.thread_id)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await resume.connect()
    # nor take over alice's live session by its id
    alices = ChatSocket(secure_app.url, alice)
    await alices.connect()
    try:
        takeover = ChatSocket(secure_app.url, bob)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await takeover.connect(session_id=alices.session_id)
        # nor upload into it, nor read its files
        upload = await bob.post("/project/file", params={"session_id": alices.session_id},
                                files={"file": ("x.txt", b"hello", "text/plain")})
        assert upload.status_code in REFUSED
        mine = await alices.upload("note.txt", b"alice's session file", "text/plain")
        assert mine.status_code == 200
        read = await bob.get(f"/project/file/{mine.json()['id']}", params={"session_id": alices.session_id})
        assert read.status_code in REFUSED
        assert (await alice.get(f"/project/file/{mine.json()['id']}",
                                params={"session_id": alices.session_id})).status_code == 200
    finally:
        await alices.close()


async def test_mcp_connections_are_off(bob: httpx.AsyncClient, secure_app: RunningApp) -> None:
    chat = ChatSocket(secure_app.url, bob)
    await chat.connect()
    try:
        response = await bob.post("/mcp", json={"sessionId": chat.session_id, "clientType": "streamable-http",
                                                "name": "x", "url": "http://127.0.0.1:9/mcp"})
        assert response.status_code in (400, *REFUSED), response.text
    finally:
        await chat.close()


async def test_memories_belong_to_their_user(secure_app: RunningApp, alice: httpx.AsyncClient,
                                             bob: httpx.AsyncClient) -> None:
    alices, bobs = ChatSocket(secure_app.url, alice), ChatSocket(secure_app.url, bob)
    await alices.connect()
    await bobs.connect()
    try:
        noted = await alices.send("/memory remember that my locker code is 4711")
        assert "4711" in noted.answer, noted.answer
        listed = (await alices.send("/memory")).answer
        short_id = listed.split("4711", 1)[1].split("`")[1]
        seen_by_bob = (await bobs.send("/memory")).answer
        assert "4711" not in seen_by_bob
        await bobs.send(f"/memory forget {short_id}")
        await bobs.send("/memory forget locker code")
        await bobs.send("/memory clear")
        assert "4711" in (await alices.send("/memory")).answer, "alice's memory survived bob's requests"
    finally:
        await alices.close()
        await bobs.close()


async def test_documents_belong_to_their_user(secure_app: RunningApp, alice: httpx.AsyncClient,
                                              bob: httpx.AsyncClient) -> None:
    text = b"Project Kestrel launches on the ninth of March. The budget is eleven thousand.\n" * 5
    upload = await share_file(secure_app, alice, "kestrel-plan.txt", text, mime="text/plain", text="/docs list")
    status, body = await raw_get(secure_app.url, upload.url, cookie_header(alice))
    assert status == 200 and body == text
    bobs = ChatSocket(secure_app.url, bob)
    await bobs.connect()
    try:
        assert "kestrel" not in (await bobs.send("/docs list")).answer.lower()
        await bobs.send("/docs delete kestrel-plan.txt")
        answer = (await bobs.send("/docs when does Project Kestrel launch?")).answer.lower()
        assert "ninth" not in answer and "kestrel-plan" not in answer
    finally:
        await bobs.close()
    alices = ChatSocket(secure_app.url, alice)
    await alices.connect()
    try:
        assert "kestrel-plan.txt" in (await alices.send("/docs list")).answer
    finally:
        await alices.close()
