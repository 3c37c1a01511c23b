"""One evaluation run: every variant over the same items, assembled into a report dict."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.eval.dataset import Item, attach, categories
from agents.eval.report import summarize
from agents.eval.runner import Outcome, Progress, Variant, run_cascade, run_variant
from agents.specialists.base import SpecialistSpec
from agents.supervisor.decision import Router
from agents.supervisor.router import Cascade, FastStage
from core.models import ModelClient
from core.settings import RouterMode, Settings


def machine() -> dict[str, Any]:
    """Where the run happened (latency means little without it)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


async def evaluate(
    client: ModelClient,
    settings: Settings,
    items: Sequence[Item],
    variants: Sequence[Variant],
    specs: Sequence[SpecialistSpec],
    *,
    dataset: str = "",
    from_packages: Sequence[str] = (),
    per_decision: float | None = None,
    progress: Progress | None = None,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
    modes: Sequence[RouterMode] = (),
    fast: FastStage | None = None,
) -> dict[str, Any]:
    """Route every item under every variant; `on_variant` gets the report so far after each variant.

    Without `modes`, each variant is the supervisor model's decision alone (`Router.decide`). With them,
    each (mode, variant) runs the router cascade in that mode (`fast` is its classifier stage), and the
    report's variants are named by mode (`mode/variant` when there are several variants)."""
    names = [spec.name for spec in specs]
    cats = categories(items, names)
    report: dict[str, Any] = {
        "meta": {
            "dataset": dataset,
            "items": len(items),
            "model": client.model_name,
            "base_url": client.endpoint.base_url,
            "structured_output": client.endpoint.structured_output,
            "temperature": client.endpoint.temperature,
            "max_tokens": client.endpoint.max_tokens,
            "specialists": names,
            "specialists_not_in_registry": list(from_packages),
            "note": (
                "Only the routing decision is evaluated; every specialist is offered as available (documents "
                "in scope; vision when an image is attached), and none is run."
            ),
            "router_modes": list(modes),
            "router": settings.router.model_dump(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
        },
        "variants": {},
    }
    embedded = client.endpoint.base_url == settings.local_llm.base_url
    runs: list[tuple[str, Variant, RouterMode | None]] = (
        [(v.name, v, None) for v in variants]
        if not modes
        else [(m if len(variants) == 1 else f"{m}/{v.name}", v, m) for m in modes for v in variants]
    )
    with tempfile.TemporaryDirectory(prefix="ensemble-eval-") as tmp:
        refs = attach(items, Path(tmp))
        for name, variant, mode in runs:
            started = time.perf_counter()
            if mode is None:
                outcomes: list[Outcome] = await run_variant(
                    client, settings, variant, items, specs, refs, per_decision=per_decision, progress=progress
                )
            else:
                mode_settings = variant.settings(settings)
                mode_settings = mode_settings.model_copy(
                    update={"router": mode_settings.router.model_copy(update={"mode": mode})}
                )
                cascade = Cascade(mode_settings, Router(client, mode_settings), fast, embedded=embedded)
                outcomes = await run_cascade(
                    cascade, mode_settings, name, items, specs, refs, per_decision=per_decision, progress=progress
                )
            report["variants"][name] = {
                "prompts": variant.source or "configured",
                "mode": mode,
                "seconds": round(time.perf_counter() - started, 1),
                "summary": summarize(outcomes, cats, names, {i.id: i.tags for i in items}),
                "items": [o.as_dict() for o in outcomes],
            }
            if on_variant is not None:
                on_variant(report)
    return report
