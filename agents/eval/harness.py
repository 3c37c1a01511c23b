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
from agents.eval.runner import Outcome, Progress, Variant, run_variant
from agents.specialists.base import SpecialistSpec
from core.models import ModelClient
from core.settings import Settings


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
) -> dict[str, Any]:
    """Route every item under every variant; `on_variant` gets the report so far after each variant."""
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
            "note": "Only the routing decision (Router.decide) is evaluated; every specialist is offered as "
            "available, and none is run.",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
        },
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="ensemble-eval-") as tmp:
        refs = attach(items, Path(tmp))
        for variant in variants:
            started = time.perf_counter()
            outcomes: list[Outcome] = await run_variant(
                client, settings, variant, items, specs, refs, per_decision=per_decision, progress=progress
            )
            report["variants"][variant.name] = {
                "prompts": variant.source or "configured",
                "seconds": round(time.perf_counter() - started, 1),
                "summary": summarize(outcomes, cats, names),
                "items": [o.as_dict() for o in outcomes],
            }
            if on_variant is not None:
                on_variant(report)
    return report
