"""Image generation: the TorchServe and OpenAI Images backends against a local HTTP server, the OpenAI
request validated against the spec's CreateImageRequest, and the specialist's saved result."""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from PIL import Image
from pydantic import SecretStr

from agents.specialists.base import Services, TurnContext
from agents.specialists.image import SPEC
from agents.specialists.image.client import OpenAIImagesBackend, TorchServeBackend, image_backend
from agents.specialists.image.specialist import MAX_SEED, ImageSpecialist, parse_request
from core.settings import ImageSettings, Settings
from tests.specialists.conftest import FakeUpstream, SchemaValidator

CTX = TurnContext(user_id="u1", thread_id="thread/../1")


def png(
    size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def read(path: Path) -> bytes:
    return path.read_bytes()


def torchserve(fake: FakeUpstream, **kw: Any) -> ImageSettings:
    values: dict[str, Any] = {
        "backend": "torchserve",
        "base_url": fake.base_url,
        "model": "sdxl_turbo",
        "timeout": 5,
    }
    values.update(kw)
    return ImageSettings(**values)


def openai_images(fake: FakeUpstream, **kw: Any) -> ImageSettings:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": f"{fake.base_url}/v1",
        "model": "sdxl-turbo",
        "timeout": 5,
        "api_key": SecretStr("sk-test"),
    }
    values.update(kw)
    return ImageSettings(**values)


def settings(image: ImageSettings, tmp_path: Path) -> Settings:
    return Settings(image=image, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]


# --- reading the request --------------------------------------------------------------------------


def test_parse_explicit_parameters() -> None:
    job = parse_request("Draw me a picture of a red fox in snow, seed 42, 4 steps, 768x512", ImageSettings())
    assert (job.prompt, job.seed, job.steps, job.width, job.height) == ("a red fox in snow", 42, 4, 768, 512)
    job = parse_request("a cat; negative prompt: blurry, lowres", ImageSettings())
    assert (job.prompt, job.negative_prompt) == ("a cat", "blurry, lowres")


def test_parse_defaults_clamps_and_random_seed() -> None:
    defaults = ImageSettings(steps=2, width=640, height=384)
    job = parse_request("a castle, 9 steps, 5000x70", defaults)  # `/image` was taken off by the registry
    assert (job.prompt, job.steps, job.width, job.height) == ("a castle", 4, 2048, 64)
    plain = parse_request("a lighthouse at dusk", defaults)
    assert (plain.steps, plain.width, plain.height) == (2, 640, 384)
    seeds = {parse_request("a lighthouse", defaults).seed for _ in range(20)}
    assert len(seeds) > 15 and all(0 <= s <= MAX_SEED for s in seeds)
    assert parse_request("a fox 123x457", defaults).height == 456  # a multiple of 8


# --- TorchServe ------------------------------------------------------------------------------------


async def test_torchserve_request_and_saved_result(upstream: FakeUpstream, tmp_path: Path) -> None:
    image = png()
    upstream.reply("POST", "/predictions/sdxl_turbo", body=image, content_type="image/png")
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("a red fox in snow, seed 7, 2 steps, 768x512", CTX, {})
    assert not result.error, result.content
    (request,) = upstream.requests
    assert request.path == "/predictions/sdxl_turbo"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "prompt": "a red fox in snow",
        "negative_prompt": "",
        "num_inference_steps": 2,
        "seed": 7,
        "width": 768,
        "height": 512,
    }
    (artifact,) = result.artifacts
    assert artifact.kind == "image" and artifact.mime == "image/png"
    assert artifact.meta["prompt"] == "a red fox in snow"
    assert artifact.meta["seed"] == 7 and artifact.meta["steps"] == 2
    assert artifact.path is not None
    saved = Path(artifact.path)
    assert read(saved) == image
    assert saved.parent.parent == (tmp_path / "images").resolve()
    assert ".." not in saved.parent.name and "/" not in saved.parent.name
    assert "a red fox in snow" in result.content and "seed 7" in result.content


async def test_a_deleted_chat_takes_its_images(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", body=png(), content_type="image/png")
    other = TurnContext(user_id="u1", thread_id="another-chat")
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        deleted = Path(str((await specialist.run("a fox", CTX, {})).artifacts[0].path))
        kept = Path(str((await specialist.run("a fox", other, {})).artifacts[0].path))
    assert SPEC.forget_chat is not None
    await SPEC.forget_chat(specialist, CTX.thread_id)
    assert not await asyncio.to_thread(deleted.parent.exists)
    assert await asyncio.to_thread(kept.exists), "other chats keep theirs"


async def test_random_seed_is_sent_and_reported(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", body=png(), content_type="image/png")
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("a lighthouse", CTX, {})
    seed = upstream.requests[0].json()["seed"]
    assert isinstance(seed, int) and result.artifacts[0].meta["seed"] == seed
    assert f"seed {seed}" in result.content


async def test_api_key_is_sent_as_bearer_token(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", body=png(), content_type="image/png")
    async with httpx.AsyncClient() as http:
        backend = TorchServeBackend(torchserve(upstream, api_key=SecretStr("ts-key")), http)
        await backend.generate("x", "", 1, 1, 64, 64)
    assert upstream.requests[0].headers["Authorization"] == "Bearer ts-key"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: sdxl_turbo"},
            r"no model named “sdxl_turbo” \(HTTP 404\)",
        ),
        (
            503,
            {
                "code": 503,
                "type": "ServiceUnavailableException",
                "message": 'Model "sdxl_turbo" has no worker to serve inference request. '
                "Please use scale workers API to add workers.",
            },
            r"no worker ready \(HTTP 503\)",
        ),
        (
            400,
            {"code": 400, "type": "BadRequest", "message": "`num_inference_steps` must be between 1 and 4"},
            r"HTTP 400\): `num_inference_steps` must be between 1 and 4",
        ),
        (
            507,
            {"code": 507, "type": "OutOfMemory", "message": "the GPU ran out of memory"},
            r"out of memory \(HTTP 507\)",
        ),
        (
            500,
            {"code": 500, "type": "InternalServerException", "message": "Worker died."},
            r"HTTP 500: Worker died\.",
        ),
        (
            401,
            {"code": 401, "type": "InvalidKeyException", "message": "Token Authorization failed"},
            r"HTTP 401.*ENSEMBLE_IMAGE__API_KEY",
        ),
    ],
)
async def test_torchserve_errors_become_messages(
    upstream: FakeUpstream, tmp_path: Path, status: int, body: dict[str, Any], expected: str
) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", status=status, json=body)
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("a fox", CTX, {})
    assert result.error and re.search(expected, result.content), result.content
    assert not (tmp_path / "images").exists()


async def test_torchserve_non_png_reply(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", json=[0.1, 0.2])
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("a fox", CTX, {})
    assert result.error and "without a PNG image" in result.content


async def test_torchserve_corrupt_png(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/predictions/sdxl_turbo", body=png()[:40], content_type="image/png")
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("a fox", CTX, {})
    assert result.error and "not a readable image" in result.content


async def test_torchserve_timeout_and_unreachable(upstream: FakeUpstream, tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.Response(body=png(), content_type="image/png")

    upstream.route("POST", "/predictions/sdxl_turbo", slow)
    async with httpx.AsyncClient() as http:
        backend = TorchServeBackend(torchserve(upstream, timeout=0.5), http)
        result = await ImageSpecialist(backend, settings(torchserve(upstream), tmp_path)).run(
            "a fox", CTX, {}
        )
        assert result.error and "did not answer within 0.5 s" in result.content
        gone = ImageSettings(base_url="http://127.0.0.1:9", timeout=2)
        result = await ImageSpecialist(TorchServeBackend(gone, http), settings(gone, tmp_path)).run(
            "a fox", CTX, {}
        )
        assert result.error and "Could not reach TorchServe" in result.content


async def test_empty_prompt_asks_what_to_draw(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        specialist = ImageSpecialist(
            TorchServeBackend(torchserve(upstream), http), settings(torchserve(upstream), tmp_path)
        )
        result = await specialist.run("draw me a picture of", CTX, {})
    assert result.error and "What should the image show" in result.content and not upstream.requests


# --- OpenAI Images API ----------------------------------------------------------------------------


async def test_openai_images_request_validates_and_b64_is_decoded(
    upstream: FakeUpstream, openai_validator: SchemaValidator, tmp_path: Path
) -> None:
    image = png((96, 64))
    upstream.reply(
        "POST",
        "/v1/images/generations",
        json={"created": 1713833628, "data": [{"b64_json": base64.b64encode(image).decode()}]},
    )
    async with httpx.AsyncClient() as http:
        backend = OpenAIImagesBackend(openai_images(upstream), http)
        result = await ImageSpecialist(backend, settings(openai_images(upstream), tmp_path)).run(
            "a watercolour harbour, 512x768", CTX, {}
        )
    assert not result.error, result.content
    (request,) = upstream.requests
    body = request.json()
    assert request.headers["Authorization"] == "Bearer sk-test"
    for validator in (
        openai_validator("CreateImageRequest"),
        openai_validator("CreateImageRequest", strict=True),
    ):
        errors = list(validator.iter_errors(body))
        assert not errors, [e.message for e in errors]
    assert body == {
        "model": "sdxl-turbo",
        "prompt": "a watercolour harbour",
        "n": 1,
        "size": "512x768",
        "response_format": "b64_json",
    }
    (artifact,) = result.artifacts
    assert read(Path(str(artifact.path))) == image
    assert artifact.meta["seed"] is None and "does not take a seed" in result.content


async def test_gpt_image_models_get_output_format_not_response_format(
    upstream: FakeUpstream, openai_validator: SchemaValidator
) -> None:
    jpeg = png((32, 32), fmt="JPEG")
    upstream.reply(
        "POST",
        "/v1/images/generations",
        json={"created": 1, "data": [{"b64_json": base64.b64encode(jpeg).decode()}], "output_format": "jpeg"},
    )
    async with httpx.AsyncClient() as http:
        data = await OpenAIImagesBackend(openai_images(upstream, model="gpt-image-1"), http).generate(
            "x", "", 1, 1, 1024, 1024
        )
    body = upstream.requests[0].json()
    assert "response_format" not in body and body["output_format"] == "png"
    assert not list(openai_validator("CreateImageRequest", strict=True).iter_errors(body))
    assert data.startswith(b"\x89PNG") and Image.open(io.BytesIO(data)).size == (32, 32)  # converted to PNG


def test_strict_image_schema_catches_unknown_fields(openai_validator: SchemaValidator) -> None:
    strict = openai_validator("CreateImageRequest", strict=True)
    assert list(strict.iter_errors({"prompt": "x", "seed": 1}))
    assert list(openai_validator("CreateImageRequest").iter_errors({"n": 1}))  # prompt is required


@pytest.mark.parametrize(
    ("status", "reply", "expected"),
    [
        (200, {"created": 1, "data": [{"url": "https://img.example/1.png"}]}, "sent a URL instead"),
        (200, {"created": 1, "data": []}, "sent no image"),
        (200, {"created": 1, "data": [{"b64_json": "!!!not base64!!!"}]}, "not valid base64"),
        (
            200,
            {"created": 1, "data": [{"b64_json": base64.b64encode(b"garbage").decode()}]},
            "not a readable image",
        ),
        (
            401,
            {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
            "rejected the API key (HTTP 401)",
        ),
        (
            429,
            {"error": {"message": "Rate limit reached", "type": "requests"}},
            "rate-limiting Ensemble (HTTP 429)",
        ),
        (
            400,
            {
                "error": {
                    "message": "Your request was rejected by the safety system.",
                    "type": "image_generation_user_error",
                }
            },
            "HTTP 400: Your request was rejected",
        ),
    ],
)
async def test_openai_images_failures(
    upstream: FakeUpstream, tmp_path: Path, status: int, reply: dict[str, Any], expected: str
) -> None:
    upstream.reply("POST", "/v1/images/generations", status=status, json=reply)
    async with httpx.AsyncClient() as http:
        backend = OpenAIImagesBackend(openai_images(upstream), http)
        result = await ImageSpecialist(backend, settings(openai_images(upstream), tmp_path)).run(
            "a fox", CTX, {}
        )
    assert result.error and expected in result.content, result.content


async def test_openai_images_malformed_json(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reply("POST", "/v1/images/generations", text="{not json", content_type="application/json")
    async with httpx.AsyncClient() as http:
        backend = OpenAIImagesBackend(openai_images(upstream), http)
        result = await ImageSpecialist(backend, settings(openai_images(upstream), tmp_path)).run(
            "a fox", CTX, {}
        )
    assert result.error and "malformed JSON" in result.content


# --- chosen by configuration alone ----------------------------------------------------------------


async def test_backend_is_chosen_by_settings_alone(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        assert image_backend(ImageSettings(), http) is None
        assert isinstance(image_backend(ImageSettings(base_url="http://ts:8080"), http), TorchServeBackend)
        assert isinstance(
            image_backend(ImageSettings(backend="openai", base_url="http://x/v1"), http), OpenAIImagesBackend
        )
        off = Services(settings=Settings(_env_file=None), http=http)  # type: ignore[call-arg]
        assert SPEC.build(off) is None
        on = Services(settings=settings(ImageSettings(base_url="http://ts:8080"), tmp_path), http=http)
        assert isinstance(SPEC.build(on), ImageSpecialist)
    assert "ENSEMBLE_IMAGE__BASE_URL" in SPEC.enable_hint
    assert SPEC.asks_for.search("please draw a picture of a cat")
