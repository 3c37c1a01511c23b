"""Two users in real browsers: each teaches Ensemble a fact, gets it back in a new chat, never sees the other's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, last_answer, login, new_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.llm]


def test_each_user_gets_their_own_memories_back_in_a_new_chat(
    app: RunningApp, browser: Any, artifacts_dir: Path
) -> None:
    facts = {"alice": "my favourite colour is teal", "bob": "my dog is called Rex"}
    pages = {user: login(browser, app.url, user) for user in facts}
    for user, fact in facts.items():
        send(pages[user], f"Remember that {fact}.")
        assert fact.split(" is ")[-1] in last_answer(pages[user])

    for user, page in pages.items():
        new_chat(page)
        send(page, "What do you remember about me?")
        answer = last_answer(page)
        other = next(u for u in facts if u != user)
        assert facts[user].split(" is ")[-1] in answer, answer
        assert facts[other].split(" is ")[-1] not in answer, answer
        page.screenshot(path=str(artifacts_dir / f"browser-memory-{user}.png"), full_page=True)

    # the sidebar lists each user's own chats only
    for user, page in pages.items():
        page.reload()
        page.locator("#chat-input").wait_for()
        page.wait_for_timeout(1000)
        body = page.locator("body").inner_text()
        other = next(u for u in facts if u != user)
        assert facts[other].split(" is ")[-1] not in body
    for page in pages.values():
        page.context.close()
