"""TorchServe handler for SDXL-Turbo text-to-image (diffusers `AutoPipelineForText2Image`).

Request (`POST /predictions/<model>`, `Content-Type: application/json`):
    {"prompt": str, "negative_prompt": str = "", "num_inference_steps": 1-4, "seed": int,
     "width": int, "height": int}
Response: `image/png` bytes; a bad request gets HTTP 400 with a JSON `{"code", "type", "message"}`.

fp16 on CUDA, fp32 on CPU; guidance scale 0 (SDXL-Turbo is trained without classifier-free
guidance); requests in one TorchServe batch that share steps and size run as one pipeline call,
each with its own seeded generator, so a seed gives the same image alone or in a batch.
Weights are never downloaded: they come from the archive (extra files) or a mounted directory
named by `handler.model_path` in model-config.yaml.

TorchServe takes the one class defined in this module as the handler.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

MAX_STEPS = 4
MAX_SEED = 2**63 - 1
DEFAULT_MAX_SIDE = 1024
DEFAULT_SIDE = 512
MAX_PROMPT_CHARS = 2000


def _handler_config(context: Any) -> dict[str, Any]:
    """The `handler:` section of model-config.yaml, or {}."""
    config = getattr(context, "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


def _model_path(context: Any, config: dict[str, Any]) -> Path:
    """Where the diffusers pipeline lives: `handler.model_path`, else inside the model directory."""
    model_dir = Path(context.system_properties.get("model_dir") or ".")
    candidates = []
    if config.get("model_path"):
        path = Path(str(config["model_path"]))
        candidates.append(path if path.is_absolute() else model_dir / path)
    candidates += [model_dir / "sdxl-turbo", model_dir]
    for path in candidates:
        if (path / "model_index.json").is_file():
            return path
    raise RuntimeError(
        "no diffusers pipeline (model_index.json) found in " + ", ".join(str(p) for p in candidates)
    )


def _int(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"`{key}` must be an integer")
    return int(value)


def _parse(row: dict[str, Any], max_side: int) -> dict[str, Any]:
    """One request row as generation parameters; raises ValueError with a message for the client."""
    body = row.get("data") if row.get("data") is not None else row.get("body")
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("the request body must be a JSON object") from exc
    elif isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError("the request body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("`prompt` must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"`prompt` is longer than {MAX_PROMPT_CHARS} characters")
    negative = body.get("negative_prompt") or ""
    if not isinstance(negative, str):
        raise ValueError("`negative_prompt` must be a string")
    steps = _int(body, "num_inference_steps", 1)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"`num_inference_steps` must be between 1 and {MAX_STEPS} for SDXL-Turbo")
    seed = _int(body, "seed", int(torch.randint(0, 2**31 - 1, (1,)).item()))
    if not 0 <= seed <= MAX_SEED:
        raise ValueError("`seed` must be between 0 and 2**63-1")
    width, height = _int(body, "width", DEFAULT_SIDE), _int(body, "height", DEFAULT_SIDE)
    for name, side in (("width", width), ("height", height)):
        if not 64 <= side <= max_side or side % 8:
            raise ValueError(f"`{name}` must be a multiple of 8 between 64 and {max_side}")
    return {
        "prompt": prompt.strip(),
        "negative_prompt": negative,
        "steps": steps,
        "seed": seed,
        "width": width,
        "height": height,
    }


def _error(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"code": code, "type": kind, "message": message}


class SDXLTurboHandler:
    """initialize → handle(preprocess → inference → postprocess), as TorchServe calls them."""

    def __init__(self) -> None:
        self.pipe: Any = None
        self.device = torch.device("cpu")
        self.max_side = DEFAULT_MAX_SIDE
        self.initialized = False

    def initialize(self, context: Any) -> None:
        from diffusers import AutoPipelineForText2Image  # the worker's import, not the module's

        config = _handler_config(context)
        self.max_side = int(config.get("max_side", DEFAULT_MAX_SIDE))
        gpu_id = context.system_properties.get("gpu_id")
        cuda = torch.cuda.is_available() and gpu_id is not None
        self.device = torch.device(f"cuda:{gpu_id}" if cuda else "cpu")
        kwargs: dict[str, Any] = {"dtype": torch.float16 if cuda else torch.float32, "local_files_only": True}
        if cuda and config.get("variant"):
            kwargs["variant"] = str(config["variant"])  # e.g. "fp16": the smaller weight files
        path = _model_path(context, config)
        started = time.monotonic()
        pipe = AutoPipelineForText2Image.from_pretrained(str(path), **kwargs)
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.initialized = True
        logger.info(
            "SDXL-Turbo loaded from %s on %s (%s) in %.1f s",
            path,
            self.device,
            kwargs["dtype"],
            time.monotonic() - started,
        )

    def preprocess(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row as parameters, or as an error (`{"error": ...}`) that answers that row alone."""
        jobs: list[dict[str, Any]] = []
        for row in data:
            try:
                jobs.append(_parse(row, self.max_side))
            except ValueError as exc:
                jobs.append({"error": _error(400, "BadRequest", str(exc))})
        return jobs

    def inference(self, jobs: list[dict[str, Any]]) -> list[Any]:
        """A PIL image per good job; rows sharing steps and size run as one batched pipeline call."""
        outputs: list[Any] = [job.get("error") for job in jobs]
        groups: dict[tuple[int, int, int], list[int]] = {}
        for idx, job in enumerate(jobs):
            if "error" not in job:
                groups.setdefault((job["steps"], job["width"], job["height"]), []).append(idx)
        for (steps, width, height), members in groups.items():
            batch = [jobs[i] for i in members]
            logger.info("generating a batch of %d: %d step(s), %dx%d", len(batch), steps, width, height)
            try:
                with torch.inference_mode():
                    images = self.pipe(
                        prompt=[job["prompt"] for job in batch],
                        negative_prompt=[job["negative_prompt"] for job in batch],
                        num_inference_steps=steps,
                        guidance_scale=0.0,
                        width=width,
                        height=height,
                        # CPU generators: the same seed gives the same noise on any device
                        generator=[torch.Generator("cpu").manual_seed(job["seed"]) for job in batch],
                    ).images
            except torch.cuda.OutOfMemoryError:
                logger.exception("out of GPU memory for a batch of %d", len(batch))
                torch.cuda.empty_cache()
                for i in members:
                    outputs[i] = _error(507, "OutOfMemory", "the GPU ran out of memory; try a smaller image")
                continue
            except Exception as exc:
                logger.exception("generation failed")
                for i in members:
                    outputs[i] = _error(500, "GenerationFailed", f"generation failed: {exc}")
                continue
            for i, image in zip(members, images, strict=True):
                outputs[i] = image
        return outputs

    def postprocess(self, outputs: list[Any], context: Any = None) -> list[Any]:
        """PNG bytes per image; errors become their JSON body with their HTTP status."""
        responses: list[Any] = []
        for idx, output in enumerate(outputs):
            if isinstance(output, dict):
                if context is not None:
                    context.set_response_status(code=output["code"], phrase=output["type"], idx=idx)
                    context.set_response_content_type(idx, "application/json")
                responses.append(json.dumps(output))
                continue
            buffer = io.BytesIO()
            output.save(buffer, format="PNG")
            if context is not None:
                context.set_response_content_type(idx, "image/png")
            responses.append(buffer.getvalue())
        return responses

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        if not self.initialized:
            self.initialize(context)
        return self.postprocess(self.inference(self.preprocess(data)), context)
