"""Image-generation backends behind one small interface, chosen by `settings.image.backend` alone.

`TorchServeBackend` speaks TorchServe's inference API (`POST /predictions/<model>`, JSON in, PNG
out) as served by `deploy/torchserve/handler.py`; `OpenAIImagesBackend` speaks the OpenAI Images
API (`POST /images/generations`, `b64_json` out) that other servers expose.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from typing import Any, Protocol

import httpx
from PIL import Image

from core.errors import EnsembleError, describe_server_error
from core.settings import ImageSettings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageGenerationError(EnsembleError):
    """A failed generation, worded for the chat user."""


class ImageBackend(Protocol):
    """A text-to-image server."""

    name: str
    supports_seed: bool  # whether `seed` and `steps` reach the model (reproducible results)

    async def generate(
        self, prompt: str, negative_prompt: str, steps: int, seed: int, width: int, height: int
    ) -> bytes:
        """One PNG for `prompt`; raises `ImageGenerationError` on failure."""
        ...


def _auth(settings: ImageSettings) -> dict[str, str]:
    key = settings.api_key.get_secret_value()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _json_error(response: httpx.Response) -> str:
    """The message in a JSON error body (TorchServe's or OpenAI's shape), else the text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return " ".join(response.text.split())[:300]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:300]
    return " ".join(response.text.split())[:300]


def to_png(data: bytes) -> bytes:
    """`data` as a checked PNG (other formats are converted); raises `ImageGenerationError`."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "PNG" and data.startswith(PNG_MAGIC):
                return data
            out = io.BytesIO()
            image.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageGenerationError("The image server sent data that is not a readable image.") from exc


class TorchServeBackend:
    """`POST {base_url}/predictions/{model}` with a JSON body; PNG bytes back."""

    name = "TorchServe"
    supports_seed = True

    def __init__(self, settings: ImageSettings, http: httpx.AsyncClient) -> None:
        if settings.base_url is None:
            raise ValueError("TorchServe needs a base URL")
        self._settings = settings
        self._url = f"{settings.base_url}/predictions/{settings.model}"
        self._http = http

    def request_body(
        self, prompt: str, negative_prompt: str, steps: int, seed: int, width: int, height: int
    ) -> dict[str, Any]:
        return {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "num_inference_steps": steps,
            "seed": seed,
            "width": width,
            "height": height,
        }

    async def generate(
        self, prompt: str, negative_prompt: str, steps: int, seed: int, width: int, height: int
    ) -> bytes:
        s = self._settings
        what = f"TorchServe ({s.base_url}, model {s.model})"
        body = self.request_body(prompt, negative_prompt, steps, seed, width, height)
        try:
            response = await self._http.post(
                self._url, json=body, headers={"Accept": "image/png", **_auth(s)}, timeout=s.timeout
            )
        except httpx.HTTPError as exc:
            raise ImageGenerationError(
                describe_server_error(exc, what=what, timeout=s.timeout) or str(exc)
            ) from exc
        if response.status_code != 200:
            raise ImageGenerationError(self._status_message(response, what))
        if not response.content.startswith(PNG_MAGIC):
            raise ImageGenerationError(
                f"{what} answered without a PNG image ({response.headers.get('content-type', 'no type')}): "
                f"{_json_error(response)[:200]}"
            )
        return await asyncio.to_thread(to_png, response.content)

    def _status_message(self, response: httpx.Response, what: str) -> str:
        code, detail = response.status_code, _json_error(response)
        if code == 404:
            return (
                f"{what} has no model named “{self._settings.model}” (HTTP 404). Register it (see "
                "deploy/torchserve/README.md) or set ENSEMBLE_IMAGE__MODEL."
            )
        if code in (401, 403):
            return (
                f"{what} refused the request (HTTP {code}). "
                "Check ENSEMBLE_IMAGE__API_KEY (TorchServe's inference token)."
            )
        if code == 503:
            return f"{what} has no worker ready (HTTP 503); the model may still be loading. Try again soon."
        if code == 507:
            return f"{what} ran out of memory (HTTP 507). Ask for a smaller image or fewer at once."
        if code == 400:
            return f"{what} did not accept the request (HTTP 400): {detail}"
        return f"{what} answered with HTTP {code}: {detail}"


class OpenAIImagesBackend:
    """`POST {base_url}/images/generations` (OpenAI Images API); `b64_json` back, stored as PNG."""

    name = "OpenAI Images API"
    supports_seed = False  # the API has no seed or step count

    def __init__(self, settings: ImageSettings, http: httpx.AsyncClient) -> None:
        if settings.base_url is None:
            raise ValueError("the Images API needs a base URL")
        self._settings = settings
        self._url = f"{settings.base_url}/images/generations"
        self._http = http

    def request_body(self, prompt: str, width: int, height: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._settings.model,
            "prompt": prompt,
            "n": 1,
            "size": f"{width}x{height}",
        }
        if self._settings.model.startswith("gpt-image"):
            body["output_format"] = "png"  # GPT image models always answer in base64
        else:
            body["response_format"] = "b64_json"
        return body

    async def generate(
        self, prompt: str, negative_prompt: str, steps: int, seed: int, width: int, height: int
    ) -> bytes:
        s = self._settings
        what = f"The image server ({s.base_url}, model {s.model})"
        try:
            response = await self._http.post(
                self._url, json=self.request_body(prompt, width, height), headers=_auth(s), timeout=s.timeout
            )
            if response.status_code == 401:
                raise ImageGenerationError(
                    f"{what} rejected the API key (HTTP 401). Check ENSEMBLE_IMAGE__API_KEY."
                )
            if response.status_code == 429:
                raise ImageGenerationError(f"{what} is rate-limiting Ensemble (HTTP 429). Try again later.")
            if response.status_code != 200:
                raise ImageGenerationError(
                    f"{what} answered with HTTP {response.status_code}: {_json_error(response)}"
                )
            reply = response.json()
        except ImageGenerationError:
            raise
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise ImageGenerationError(
                describe_server_error(exc, what=what, timeout=s.timeout) or str(exc)
            ) from exc
        data = reply.get("data") if isinstance(reply, dict) else None
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else None
        if first is None:
            raise ImageGenerationError(f"{what} sent no image (its reply had no `data`).")
        if not isinstance(first.get("b64_json"), str):
            raise ImageGenerationError(
                f"{what} sent a URL instead of the image itself; it must support `b64_json`."
            )
        try:
            raw = base64.b64decode(first["b64_json"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageGenerationError(f"{what} sent image data that is not valid base64.") from exc
        return await asyncio.to_thread(to_png, raw)


def image_backend(settings: ImageSettings, http: httpx.AsyncClient) -> ImageBackend | None:
    """The backend named by `settings.backend`, or None when no server is configured."""
    if settings.base_url is None:
        return None
    if settings.backend == "openai":
        return OpenAIImagesBackend(settings, http)
    return TorchServeBackend(settings, http)
