"""Checking and preparing uploaded images (Pillow), for the vision specialist and its upload check.

`validate_image` refuses a file at once when it is not a decodable PNG/JPEG/WebP/GIF or breaks
the upload limits; `prepare_image` turns an accepted file into what a vision model is sent: the
first frame, upright (EXIF orientation), alpha flattened onto white, downscaled, re-encoded.
Both are blocking (Pillow decodes): call them off the event loop (`asyncio.to_thread`).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import EnsembleError
from core.settings import UploadSettings

ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
JPEG_QUALITY = 90
LOSSLESS_SOURCES = {"PNG", "GIF"}  # screenshots and drawings stay PNG; photos become JPEG


class ImageRejected(EnsembleError):
    """An image that cannot be used; the message says why, for the chat user."""


@dataclass(frozen=True)
class ImageLimits:
    """What an uploaded image may be: bytes on disk, pixels decoded, longest side sent to a model."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 1344

    @classmethod
    def from_settings(cls, uploads: UploadSettings) -> ImageLimits:
        return cls(uploads.image_max_bytes, uploads.image_max_pixels, uploads.image_max_side)


@dataclass(frozen=True)
class ImageInfo:
    """An accepted upload: its real format (from its content, not its name) and size."""

    format: str
    mime: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a vision model."""

    data: bytes
    mime: str
    width: int
    height: int
    source: ImageInfo

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _open(path: Path, limits: ImageLimits, name: str) -> tuple[Image.Image, ImageInfo]:
    """Open `path` (header only) and check it against `limits` before any pixel is decoded."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageRejected(f"The image “{name}” could not be read: it is no longer on the server.") from exc
    if size == 0:
        raise ImageRejected(f"“{name}” is empty (0 bytes).")
    if size > limits.max_bytes:
        raise ImageRejected(
            f"“{name}” is {_mib(size)}, more than the {_mib(limits.max_bytes)} allowed for images."
        )
    try:
        # Pillow's own bomb guard (the process-wide Image.MAX_IMAGE_PIXELS) is left as it is:
        # changing it per call would race between threads. It raises past twice its limit; the
        # configured limit is checked below from the header, before any pixel is decoded.
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(name, None, limits) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            f"“{name}” is not an image that Ensemble can read. Upload a PNG, JPEG, WebP or GIF."
        ) from exc
    except OSError as exc:
        raise ImageRejected(f"“{name}” could not be opened as an image ({exc}).") from exc
    fmt = (image.format or "").upper()
    if fmt not in ACCEPTED_FORMATS:
        image.close()
        raise ImageRejected(
            f"“{name}” is a {fmt or 'unknown'} image; Ensemble accepts PNG, JPEG, WebP and GIF."
        )
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise ImageRejected(f"“{name}” has no pixels.")
    if width * height > limits.max_pixels:
        image.close()
        raise _too_many_pixels(name, (width, height), limits)
    frames = int(getattr(image, "n_frames", 1) or 1)
    return image, ImageInfo(fmt, ACCEPTED_FORMATS[fmt], width, height, frames)


def _too_many_pixels(name: str, size: tuple[int, int] | None, limits: ImageLimits) -> ImageRejected:
    dims = f" ({size[0]}×{size[1]})" if size else ""
    return ImageRejected(
        f"“{name}”{dims} has more pixels than the {limits.max_pixels / 1e6:g} megapixels allowed; "
        "it may be a decompression bomb. Upload a smaller image."
    )


def _decode_first_frame(image: Image.Image, name: str) -> None:
    try:
        image.seek(0)
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"“{name}” is damaged or truncated and cannot be decoded.") from exc


def validate_image(path: str | Path, limits: ImageLimits, *, name: str | None = None) -> ImageInfo:
    """Check that `path` is a decodable PNG/JPEG/WebP/GIF within `limits`; raise `ImageRejected` if not."""
    path = Path(path)
    label = name or path.name
    image, info = _open(path, limits, label)
    with image:
        if info.format == "JPEG":
            image.draft("RGB", (limits.max_side, limits.max_side))  # decode a reduced JPEG: cheaper
        _decode_first_frame(image, label)
    return info


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (and 16-bit greyscale scaled to 8 bits)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        high = image.getextrema()[1]
        wide = image.convert("I")
        image = (
            wide.point(lambda v: v * (1 / 256)) if isinstance(high, int | float) and high > 255 else wide
        ).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def prepare_image(path: str | Path, limits: ImageLimits, *, name: str | None = None) -> PreparedImage:
    """The first frame of an accepted image, upright, flattened, within `limits.max_side`, re-encoded."""
    path = Path(path)
    label = name or path.name
    image, info = _open(path, limits, label)
    with image:
        if info.format == "JPEG":
            image.draft("RGB", (limits.max_side, limits.max_side))
        _decode_first_frame(image, label)
        try:
            frame = ImageOps.exif_transpose(image)
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageRejected(f"“{label}” has broken orientation data and cannot be used.") from exc
        frame = _flatten(frame)
        if max(frame.size) > limits.max_side:
            frame.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if info.format in LOSSLESS_SOURCES:
            frame.save(out, format="PNG", optimize=False)
            mime = "image/png"
        else:
            frame.save(out, format="JPEG", quality=JPEG_QUALITY)
            mime = "image/jpeg"
        return PreparedImage(out.getvalue(), mime, frame.width, frame.height, info)
