"""A new user's first three messages on the embedded default, in Chromium: routed right, the decision shown.

The app runs as `ensemble up` runs it with nothing configured (the embedded SmolLM2 server, the local
embedder, the router cascade at its defaults). Each turn must show the Supervisor step, with what it
chose, by which stage, how sure and how fast, above the answer it led to.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, login, new_chat, send

pytestmark = [pytest.mark.browser, pytest.mark.llm]

FIRST_MESSAGES = [
    ("Hello! In one sentence, what can you do?", "answered directly"),
    ("What is the capital of France?", "answered directly"),
    ("Write a Python function that reverses a string.", "Code"),
]
DECISION = re.compile(r"Supervisor: (.+?) \((fast|facts|model), (?:(\d\.\d\d), )?(\d+ ms|\d+\.\d s)\)")


def test_first_messages_route_right_and_show_the_decision_above_the_answer(
    app: RunningApp, browser: Any, artifacts_dir: Path
) -> None:
    page = login(browser, app.url, "bob")
    new_chat(page)
    seen: list[tuple[str, str, str | None]] = []
    for n, (text, _) in enumerate(FIRST_MESSAGES, start=1):
        send(page, text)
        steps = page.get_by_text(DECISION)
        steps.nth(n - 1).wait_for(timeout=30_000)
        assert steps.count() == n, f"one Supervisor step per turn (turn {n}: {steps.count()})"
        step = steps.nth(n - 1)
        match = DECISION.search(step.inner_text())
        assert match is not None
        seen.append((match.group(1), match.group(2), match.group(3)))
        answers = page.locator("[data-step-type='assistant_message']")
        answer = answers.last
        assert answer.inner_text().strip(), f"turn {n} has an answer"
        step_box, answer_box = step.bounding_box(), answer.bounding_box()
        assert step_box is not None and answer_box is not None
        assert step_box["y"] < answer_box["y"], f"turn {n}: the Supervisor step shows above the answer"
        if n > 1:  # and below the previous turn's answer: it belongs to this turn
            previous = answers.nth(answers.count() - 2).bounding_box()
            assert previous is not None and previous["y"] < step_box["y"]
    page.screenshot(path=str(artifacts_dir / "browser-router.png"), full_page=True)
    page.context.close()

    assert [chosen for chosen, _, _ in seen] == [expected for _, expected in FIRST_MESSAGES], seen
    assert all(stage == "fast" for _, stage, _ in seen), "the fast stage decided, no model call"
    assert all(confidence is not None and 0 < float(confidence) <= 1 for _, _, confidence in seen)
