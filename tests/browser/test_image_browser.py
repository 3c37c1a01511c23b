"""Image generation in the running app, against a real TorchServe serving the SDXL-Turbo handler.

The pipeline behind it is a tiny randomly initialised SDXL-architecture model built by the test
(no download); the handler, TorchServe, the client and the app are the real ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.settings import LocalLLMSettings
from tests.browser.conftest import create_users, last_answer, login, send, start_app
from tests.specialists.test_torchserve_handler import Served, tiny_pipeline, torchserve_server

pytestmark = [pytest.mark.browser, pytest.mark.llm, pytest.mark.torchserve, pytest.mark.own_app]
__all__ = ["tiny_pipeline", "torchserve_server"]  # fixtures shared with the handler's tests


def test_generated_image_appears_inline_and_stays_after_reload(
    torchserve_server: Served, local_llm: LocalLLMSettings, browser: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    extra = {"ENSEMBLE_IMAGE__BASE_URL": torchserve_server.inference,
             "ENSEMBLE_IMAGE__MODEL": torchserve_server.model, "ENSEMBLE_IMAGE__WIDTH": "256",
             "ENSEMBLE_IMAGE__HEIGHT": "256"}
    create_users(tmp_path, {**os.environ, **extra})
    app = start_app(tmp_path, local_llm.port, extra)
    try:
        page = login(browser, app.url, "alice")
        send(page, "/image a lighthouse at dusk, seed 7", timeout=180)
        answer = last_answer(page)
        assert "seed" in answer.lower() and "7" in answer, answer
        image = page.locator("[data-step-type='assistant_message'] img").last
        image.wait_for(timeout=30_000)
        assert image.evaluate("img => img.complete && img.naturalWidth") == 256
        page.screenshot(path=str(artifacts_dir / "browser-image.png"), full_page=True)

        page.reload()  # the image is part of the chat's history, served back from the app's storage
        again = page.locator("[data-step-type='assistant_message'] img").last
        again.wait_for(timeout=30_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=again.element_handle())
        page.screenshot(path=str(artifacts_dir / "browser-image-reloaded.png"), full_page=True)
        page.context.close()
    finally:
        app.stop()
