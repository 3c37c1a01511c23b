"""A user uploads a 200,000-row CSV, asks an aggregate question, and gets the right numbers with the query shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import RunningApp, attach, last_answer, login, send
from tests.specialists.test_data import write_orders

pytestmark = [pytest.mark.browser, pytest.mark.llm]


def test_a_200k_row_csv_answers_an_aggregate_question_with_the_query_in_the_step(
    app: RunningApp, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    csv = tmp_path / "orders.csv"
    truth = write_orders(csv, 200_000, seed=11)
    assert csv.stat().st_size > 8_000_000  # ~10 MB, like the 13 MB file of the issue
    page = login(browser, app.url, "alice")
    attach(page, [csv])
    send(page, "What is the average order value per region in the table?", timeout=240)
    answer = last_answer(page)
    page.screenshot(path=str(artifacts_dir / "browser-data.png"), full_page=True)
    for region, value in truth.items():  # the right number for each region, in a table
        assert re.search(rf"{region}\s*\|?\s*{value:.2f}", answer), (region, value, answer)
    assert "refused" not in answer.lower() and "over the limit" not in answer
    step = page.get_by_text(re.compile(r"Used Data \(\d+\.\d s\)"))
    step.first.click()  # open the step: the query it ran is shown there
    page.wait_for_timeout(500)
    body = page.locator("body").inner_text()
    assert 'SELECT "region", avg("order_value")' in body and 'FROM "orders"' in body
    assert "deterministic planner" in body
    page.screenshot(path=str(artifacts_dir / "browser-data-step.png"), full_page=True)
    page.context.close()
