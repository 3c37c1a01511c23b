"""Vision: image checks and preparation (Pillow), and the chat-completions request the real ChatOpenAI
client sends, captured by a local HTTP server and validated against OpenAI's spec."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from PIL import Image

from agents.specialists.base import FileRef, Services, TurnContext
from agents.specialists.registry import model_roles
from agents.specialists.vision import SPEC
from agents.specialists.vision.client import VisionClient
from agents.specialists.vision.images import ImageLimits, ImageRejected, prepare_image, validate_image
from agents.specialists.vision.specialist import VisionSpecialist, pick_images
from core.models import ModelClient, ModelClients, chat_model
from core.settings import ChatEndpoint, Settings, UploadSettings
from tests.specialists.conftest import FakeUpstream, SchemaValidator, chat_route

LIMITS = ImageLimits(max_bytes=5 * 1024 * 1024, max_pixels=40_000_000, max_side=256)
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def close(a: tuple[int, ...], b: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=False))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def half_and_half(
    size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]
) -> Image.Image:
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width`×`height` but holds almost no data: a decompression-bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


# --- preparation -----------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    half_and_half((80, 40), RED, BLUE).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    prepared = prepare_image(path, LIMITS)
    image = decoded(prepared.data)
    assert prepared.mime == "image/jpeg" and image.format == "JPEG"
    assert image.size == (40, 80)  # upright: portrait
    assert close(image.getpixel((20, 10)), RED) and close(image.getpixel((20, 70)), BLUE)


def test_gif_first_frame_only(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    prepared = prepare_image(path, LIMITS)
    image = decoded(prepared.data)
    assert prepared.source.frames == 3
    assert prepared.mime == "image/png" and getattr(image, "n_frames", 1) == 1
    assert close(image.convert("RGB").getpixel((5, 5)), RED, tol=5)


def test_alpha_is_flattened_onto_white(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    image = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # transparent black
    image.paste((255, 0, 0, 128), (10, 0, 20, 10))  # half-transparent red
    image.save(path)
    out = decoded(prepare_image(path, LIMITS).data)
    assert out.mode == "RGB"
    assert out.getpixel((2, 2)) == WHITE
    assert close(out.getpixel((15, 5)), (255, 127, 127), tol=3)


def test_palette_transparency_is_flattened(tmp_path: Path) -> None:
    path = tmp_path / "p.gif"
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (5, 0, 10, 10))
    image.save(path, transparency=0)
    out = decoded(prepare_image(path, LIMITS).data).convert("RGB")
    assert out.getpixel((1, 1)) == WHITE and out.getpixel((8, 8)) == RED


@pytest.mark.parametrize(
    ("mode", "value", "name", "expected"),
    [
        ("CMYK", (0, 255, 255, 0), "print.jpg", RED),  # a print-shop JPEG
        ("I;16", 30000, "scan.png", (117, 117, 117)),  # 16-bit greyscale, scaled to 8 bits
        ("LA", (100, 255), "grey.png", (100, 100, 100)),
    ],
)
def test_other_modes_become_rgb(
    tmp_path: Path, mode: str, value: Any, name: str, expected: tuple[int, int, int]
) -> None:
    path = tmp_path / name
    Image.new(mode, (20, 10), value).save(path)
    out = decoded(prepare_image(path, LIMITS).data)
    assert out.mode == "RGB" and close(out.getpixel((5, 5)), expected, tol=3)


def test_downscaled_to_max_side_keeping_aspect(tmp_path: Path) -> None:
    path = tmp_path / "wide.webp"
    half_and_half((1200, 400), RED, BLUE).save(path, format="WEBP")
    prepared = prepare_image(path, LIMITS)
    assert (prepared.width, prepared.height) == (256, 85)
    assert decoded(prepared.data).size == (256, 85) and prepared.mime == "image/jpeg"
    assert prepared.data_url().startswith("data:image/jpeg;base64,")


def test_small_image_is_not_upscaled(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    Image.new("RGB", (30, 20), GREEN).save(path)
    assert decoded(prepare_image(path, LIMITS).data).size == (30, 20)


# --- refusals --------------------------------------------------------------------------------------


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is a text file with a .png name\n" * 10)
    with pytest.raises(ImageRejected, match="not an image that Ensemble can read"):
        validate_image(path, LIMITS)


def test_unsupported_format(tmp_path: Path) -> None:
    path = tmp_path / "old.bmp"
    Image.new("RGB", (10, 10)).save(path, format="BMP")
    with pytest.raises(ImageRejected, match="BMP image; Ensemble accepts PNG, JPEG, WebP and GIF"):
        validate_image(path, LIMITS)


def test_truncated_image(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    half_and_half((200, 200), RED, BLUE).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        validate_image(path, LIMITS)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageRejected, match="empty"):
        validate_image(path, LIMITS)


def test_over_size_in_bytes(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.effect_noise((300, 300), 100).save(path)
    with pytest.raises(ImageRejected, match=r"is 0\.\d MB, more than the 0\.0 MB allowed"):
        validate_image(path, ImageLimits(max_bytes=1000, max_pixels=10**7, max_side=256))


def test_over_pixel_limit_is_refused_from_the_header(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "wide.png", 8000, 6000)  # 48 MP > 40 MP, far below Pillow's guard
    with pytest.raises(ImageRejected, match=r"8000×6000.*40 megapixels.*decompression bomb"):
        validate_image(path, LIMITS)


def test_decompression_bomb_beyond_pillows_guard(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "bomb.png", 50_000, 50_000)  # 2.5 GP: Pillow refuses at open
    assert path.stat().st_size < 200
    with pytest.raises(ImageRejected, match="decompression bomb"):
        validate_image(path, LIMITS)
    with pytest.raises(ImageRejected, match="decompression bomb"):
        prepare_image(path, ImageLimits(max_bytes=10**9, max_pixels=10**12, max_side=256))


def test_pillow_global_guard_is_left_alone(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "fine.png"
    Image.new("RGB", (16, 16)).save(path)
    info = validate_image(path, LIMITS)
    assert (info.format, info.width, info.height) == ("PNG", 16, 16)
    assert before == Image.MAX_IMAGE_PIXELS


def test_limits_come_from_upload_settings() -> None:
    limits = ImageLimits.from_settings(
        UploadSettings(image_max_bytes=123, image_max_pixels=456, image_max_side=789)
    )
    assert limits == ImageLimits(123, 456, 789)


# --- which images a question is about -------------------------------------------------------------


def ref(tmp_path: Path, name: str, colour: tuple[int, int, int] = RED, kind: str = "image") -> FileRef:
    path = tmp_path / name
    if kind == "image":
        Image.new("RGB", (64, 48), colour).save(path)
    else:
        path.write_text("text")
    return FileRef(id=name, name=name, path=str(path), mime="image/png", size=path.stat().st_size, kind=kind)  # type: ignore[arg-type]


def test_pick_images(tmp_path: Path) -> None:
    a, b, c = ref(tmp_path, "cat.png"), ref(tmp_path, "dog.png"), ref(tmp_path, "bird.png")
    doc = ref(tmp_path, "notes.txt", kind="document")
    ctx = TurnContext("u", "t", files=(a, doc, b, c))
    assert pick_images("what is in it?", ctx) == [c]  # the newest by default
    assert pick_images("compare these images", ctx) == [a, b, c]
    assert pick_images("what colour is the animal in cat.png?", ctx) == [a]
    assert pick_images("what is this?", TurnContext("u", "t", files=(a, b, c), new_files=(b,))) == [b]
    assert pick_images("anything", TurnContext("u", "t", files=(doc,))) == []


# --- the request on the wire ----------------------------------------------------------------------


def vision_client(fake: FakeUpstream, timeout: float = 10) -> VisionClient:
    endpoint = ChatEndpoint(base_url=f"{fake.base_url}/v1", model="llava-v1.6-mistral-7b", timeout=timeout)
    return VisionClient(ModelClient("vision", endpoint, chat_model(endpoint)))


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, uploads=UploadSettings(image_max_side=128), _env_file=None)  # type: ignore[call-arg]


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    user = next(m for m in body["messages"] if m["role"] == "user")
    return [p for p in user["content"] if p["type"] == "image_url"]


async def test_request_validates_against_openai_chat_schema(
    upstream: FakeUpstream, openai_validator: SchemaValidator, tmp_path: Path
) -> None:
    chat_route(upstream, "A red square.")
    photo = ref(tmp_path, "photo.png", RED)
    specialist = VisionSpecialist(vision_client(upstream), settings(tmp_path))
    result = await specialist.run("What is in this picture?", TurnContext("u", "t", files=(photo,)), {})
    assert not result.error and result.content == "A red square."
    (request,) = upstream.requests
    assert request.path == "/v1/chat/completions"
    body = request.json()
    errors = sorted(openai_validator("CreateChatCompletionRequest").iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    assert body["model"] == "llava-v1.6-mistral-7b" and body["stream"] is True
    (part,) = image_parts(body)
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = decoded(base64.b64decode(url.split(",", 1)[1]))
    assert sent.size == (64, 48) and close(sent.convert("RGB").getpixel((3, 3)), RED, tol=2)
    user = next(m for m in body["messages"] if m["role"] == "user")
    assert user["content"][-1] == {"type": "text", "text": "What is in this picture?"}
    # the image part itself, against the spec's own schema for it
    assert not list(openai_validator("ChatCompletionRequestMessageContentPartImage").iter_errors(part))


def test_the_schema_check_can_fail(openai_validator: SchemaValidator) -> None:
    """The validator is not vacuous: a malformed image part or message is caught."""
    validator = openai_validator("CreateChatCompletionRequest")
    good = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert not list(validator.iter_errors(good))
    no_url = {"type": "image_url", "image_url": {"detail": "low"}}
    assert list(validator.iter_errors({**good, "messages": [{"role": "user", "content": [no_url]}]}))
    wrong_detail = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AA==", "detail": "ultra"},
    }
    assert list(validator.iter_errors({**good, "messages": [{"role": "user", "content": [wrong_detail]}]}))
    assert list(validator.iter_errors({"model": "m", "messages": []}))


async def test_several_images_are_labelled_and_downscaled(
    upstream: FakeUpstream, openai_validator: SchemaValidator, tmp_path: Path
) -> None:
    chat_route(upstream, "The first is red, the second blue.")
    big = tmp_path / "big.jpg"
    half_and_half((1000, 500), RED, BLUE).save(big, quality=92)
    a = ref(tmp_path, "a.png", RED)
    b = FileRef(
        id="b", name="big.jpg", path=str(big), mime="image/jpeg", size=big.stat().st_size, kind="image"
    )
    specialist = VisionSpecialist(vision_client(upstream), settings(tmp_path))
    result = await specialist.run("Compare both images", TurnContext("u", "t", files=(a, b)), {})
    assert not result.error
    body = upstream.requests[0].json()
    assert not list(openai_validator("CreateChatCompletionRequest").iter_errors(body))
    user = next(m for m in body["messages"] if m["role"] == "user")
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert texts[:2] == ["Image 1: a.png", "Image 2: big.jpg"]
    urls = [p["image_url"]["url"] for p in image_parts(body)]
    assert urls[1].startswith("data:image/jpeg;base64,")
    assert decoded(base64.b64decode(urls[1].split(",", 1)[1])).size == (128, 64)


async def test_follow_up_uses_an_earlier_image_without_reupload(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    chat_route(upstream, "It is green.")
    first, second = ref(tmp_path, "first.png", GREEN), ref(tmp_path, "notes.txt", kind="document")
    ctx = TurnContext("u", "t", files=(first, second), new_files=())
    result = await VisionSpecialist(vision_client(upstream), settings(tmp_path)).run(
        "and its colour?", ctx, {}
    )
    assert result.content == "It is green."
    (part,) = image_parts(upstream.requests[0].json())
    sent = decoded(base64.b64decode(part["image_url"]["url"].split(",", 1)[1]))
    assert close(sent.convert("RGB").getpixel((1, 1)), GREEN, tol=2)


async def test_bad_upload_is_refused_without_calling_the_model(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    chat_route(upstream, "should not be asked")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"%PDF-1.7 not an image")
    bad = FileRef(id="x", name="fake.png", path=str(fake), mime="image/png", size=22, kind="image")
    result = await VisionSpecialist(vision_client(upstream), settings(tmp_path)).run(
        "what is this?", TurnContext("u", "t", files=(bad,)), {}
    )
    assert result.error and "“fake.png” is not an image" in result.content
    assert upstream.requests == []


async def test_bomb_among_several_is_skipped_with_a_note(upstream: FakeUpstream, tmp_path: Path) -> None:
    chat_route(upstream, "A red image.")
    good = ref(tmp_path, "good.png", RED)
    bomb_path = png_header_only(tmp_path / "bomb.png", 50_000, 50_000)
    bomb = FileRef(id="bomb", name="bomb.png", path=str(bomb_path), mime="image/png", size=100, kind="image")
    result = await VisionSpecialist(vision_client(upstream), settings(tmp_path)).run(
        "describe these images", TurnContext("u", "t", files=(good, bomb)), {}
    )
    assert not result.error
    assert result.content.startswith("A red image.") and "“bomb.png”" in result.content
    assert len(image_parts(upstream.requests[0].json())) == 1


async def test_no_image_in_chat(upstream: FakeUpstream, tmp_path: Path) -> None:
    result = await VisionSpecialist(vision_client(upstream), settings(tmp_path)).run(
        "what is in the picture?", TurnContext("u", "t"), {}
    )
    assert result.error and "no image in this chat" in result.content


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "answered with HTTP 500"), (400, "answered with HTTP 400"), (503, "answered with HTTP 503")],
)
async def test_server_errors_become_messages(
    upstream: FakeUpstream, tmp_path: Path, status: int, expected: str
) -> None:
    upstream.reply(
        "POST", "/v1/chat/completions", status=status, json={"error": {"message": "image too large"}}
    )
    result = await VisionSpecialist(vision_client(upstream), settings(tmp_path)).run(
        "what?", TurnContext("u", "t", files=(ref(tmp_path, "a.png"),)), {}
    )
    assert result.error and expected in result.content and "llava" in result.content


async def test_slow_server_times_out_with_a_message(upstream: FakeUpstream, tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.json_response({})

    upstream.route("POST", "/v1/chat/completions", slow)
    result = await VisionSpecialist(vision_client(upstream, timeout=0.5), settings(tmp_path)).run(
        "what?", TurnContext("u", "t", files=(ref(tmp_path, "a.png"),)), {}
    )
    assert result.error and "did not answer within 0.5 s" in result.content


async def test_unreachable_server(tmp_path: Path) -> None:
    endpoint = ChatEndpoint(base_url="http://127.0.0.1:9/v1", model="llava", timeout=3)
    client = VisionClient(ModelClient("vision", endpoint, chat_model(endpoint)))
    result = await VisionSpecialist(client, settings(tmp_path)).run(
        "what?", TurnContext("u", "t", files=(ref(tmp_path, "a.png"),)), {}
    )
    assert result.error and "Could not reach" in result.content


async def test_available_only_with_a_vision_server(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        off = Services(settings=Settings(_env_file=None), http=http)  # type: ignore[call-arg]
        assert SPEC.build(off) is None
        on_settings = Settings(
            vision=ChatEndpoint(base_url="http://sglang:30000/v1", model="llava"), _env_file=None
        )  # type: ignore[call-arg]
        models = ModelClients.from_settings(on_settings, model_roles([SPEC]))
        on = Services(settings=on_settings, http=http, models=models)
        assert isinstance(SPEC.build(on), VisionSpecialist)
    assert "ENSEMBLE_VISION__BASE_URL" in SPEC.enable_hint
