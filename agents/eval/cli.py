"""`ensemble-eval`: the router on a labelled set, per router mode, against the configured endpoints.

By default every item goes through the router cascade in each mode (`facts`, `fast`, `model`,
`cascade`; the app runs the one `ENSEMBLE_ROUTER__MODE` names, `cascade` unless set) and the report
ends with the modes side by side; `--router model-only` evaluates the supervisor model's decision
alone, as before the cascade (for comparing prompt variants). Every specialist is offered to the
router as if it were available, so that a deployment can be evaluated before its specialist servers
exist; the specialists themselves are never run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from agents.eval.dataset import ROUTER_DATASET, load_dataset, stratified
from agents.eval.harness import evaluate
from agents.eval.report import render, write_chart, write_json
from agents.eval.runner import DEFAULT_VARIANT, Outcome, offered_specs, parse_variant
from agents.specialists.registry import configured_specs
from agents.supervisor.classifier import RecentVectors
from agents.supervisor.router import FastStage
from core.console import run_console
from core.errors import EnsembleError
from core.local_llm import LocalLLMServer
from core.models import ModelClient, ModelClients, chat_model
from core.settings import RouterMode, Settings

ROUTER_MODES: tuple[RouterMode, ...] = ("facts", "fast", "model", "cascade")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble-eval", description=__doc__)
    parser.add_argument(
        "--dataset", type=Path, default=ROUTER_DATASET, help=f"labelled YAML set (default: {ROUTER_DATASET.name})"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[=PROMPTS.yaml]",
        help="prompt variant to evaluate; repeat to compare side by side. NAME alone: the configured "
        "prompts; NAME=FILE: FILE's per-model overrides ({model glob: {prompt name: text}} or "
        f"{{prompt name: text}}) on top of them (default: {DEFAULT_VARIANT})",
    )
    parser.add_argument("--limit", type=int, help="evaluate at most N items, spread over all categories")
    parser.add_argument(
        "--only", action="append", default=[], metavar="ID", help="evaluate only these item ids"
    )
    parser.add_argument(
        "--json", type=Path, default=Path("eval-results/routing.json"), help="where to write JSON"
    )
    parser.add_argument(
        "--chart", type=Path, default=Path("eval-results/routing.png"), help="where to write the PNG"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds per decision (default: the endpoint's timeout)"
    )
    parser.add_argument("--temperature", type=float, help="override the supervisor endpoint's temperature")
    parser.add_argument(
        "--render",
        type=Path,
        action="append",
        default=[],
        metavar="REPORT.json",
        help="print and plot a saved report (no model calls); repeat to put several runs' modes or variants "
        "side by side (e.g. the model mode on a --limit subset beside the others on the whole set)",
    )
    parser.add_argument(
        "--router",
        action="append",
        default=[],
        choices=[*ROUTER_MODES, "model-only"],
        help="router mode to evaluate; repeat to compare (default: all four). model-only: the supervisor "
        "model's decision alone (Router.decide), per prompt variant",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per decision on stderr")
    return parser


def _client(settings: Settings, temperature: float | None) -> ModelClient:
    client = ModelClients.from_settings(settings).supervisor
    if client is None:
        raise EnsembleError(
            "No supervisor model is configured: set ENSEMBLE_SUPERVISOR__BASE_URL, or leave it unset for the "
            "embedded local model."
        )
    if temperature is None:
        return client
    endpoint = client.endpoint.model_copy(update={"temperature": temperature})
    return ModelClient(client.role, endpoint, chat_model(endpoint))


def _shown(path: Path) -> str:
    """A path relative to the working directory where it is under it (for the report)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _progress(variant: str, outcome: Outcome) -> None:
    mark = "ok " if outcome.correct else ("ERR" if outcome.error else "-- ")
    chosen = ",".join(outcome.chosen) or "answer"
    extra = f" {outcome.error}" if outcome.error else (" (fell back)" if outcome.fell_back else "")
    stage = f" by {outcome.stage}" if outcome.stage else ""
    sure = f" p={outcome.confidence:.2f}" if outcome.confidence is not None else ""
    print(
        f"[{variant}] {mark} {outcome.id:<14} -> {chosen:<22} {outcome.seconds:6.3f} s{stage}{sure}{extra}",
        file=sys.stderr,
    )


async def _fast_stage(settings: Settings, specs: list[Any], stack: contextlib.AsyncExitStack) -> FastStage | None:
    """The classifier stage on the embedder the app would use (the local model unless a server is set)."""
    from rag.embeddings import build_embedder

    http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
    try:
        embedder = await build_embedder(settings.embeddings, http, settings.model_cache)
    except EnsembleError as exc:
        print(f"ensemble-eval: no embedder, so no fast stage ({exc})", file=sys.stderr)
        return None
    stack.push_async_callback(embedder.aclose)
    fast = FastStage(RecentVectors(embedder), specs, settings, settings.model_cache).start()
    stack.push_async_callback(fast.aclose)
    if await fast.classifier() is None:
        return None
    return fast


def _render_saved(args: argparse.Namespace) -> int:
    reports = [json.loads(path.read_text(encoding="utf-8")) for path in args.render]
    report = reports[0]
    for other in reports[1:]:
        for name, variant in other["variants"].items():
            n = other["meta"]["items"]
            label = name if n == report["meta"]["items"] else f"{name} (n={n})"
            report["variants"][label] = variant
    if args.json and len(reports) > 1:
        write_json(report, args.json)
    write_chart(report, args.chart)
    print(render(report))
    print(f"chart: {args.chart}")
    return 0


async def _run(args: argparse.Namespace) -> int:
    settings = Settings()
    items = load_dataset(args.dataset)
    if args.only:
        wanted = set(args.only)
        items = [item for item in items if item.id in wanted]
    if args.limit:
        items = stratified(items, args.limit)
    if not items:
        raise EnsembleError("no items to evaluate")
    variants = [parse_variant(v) for v in args.variant or [DEFAULT_VARIANT]]
    if len({v.name for v in variants}) != len(variants):
        raise EnsembleError("variant names must differ")
    specs, from_packages = offered_specs(await configured_specs(settings))  # with the MCP servers configured
    client = _client(settings, args.temperature)

    def checkpoint(report: dict[str, Any]) -> None:
        write_json(report, args.json)

    partial = args.json.with_suffix(".partial.jsonl")  # every decision as it is made, for long runs
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text("", encoding="utf-8")

    def progress(variant: str, outcome: Outcome) -> None:
        with partial.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"variant": variant, **outcome.as_dict()}) + "\n")
        if not args.quiet:
            _progress(variant, outcome)

    modes: list[RouterMode] = []
    if "model-only" not in args.router:
        modes = [m for m in ROUTER_MODES if m in args.router] if args.router else list(ROUTER_MODES)
    needs_model = not modes or any(m in ("model", "cascade") for m in modes)
    async with contextlib.AsyncExitStack() as stack:
        fast = await _fast_stage(settings, specs, stack) if set(modes) & {"fast", "cascade"} else None
        if needs_model and settings.local_llm_active and client.endpoint.base_url == settings.local_llm.base_url:
            print(f"Starting the embedded model server at {settings.local_llm.base_url} ...", file=sys.stderr)
            server = LocalLLMServer(settings.local_llm, settings.data_dir / "local-llm.log")
            await stack.enter_async_context(server)
        report = await evaluate(
            client,
            settings,
            items,
            variants,
            specs,
            dataset=_shown(args.dataset),
            from_packages=from_packages,
            per_decision=args.timeout,
            progress=progress,
            on_variant=checkpoint,
            modes=modes,
            fast=fast,
        )
    write_json(report, args.json)
    write_chart(report, args.chart)
    print(render(report))
    print(f"JSON: {args.json}\nchart: {args.chart}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = (lambda: _render_saved(args)) if args.render else (lambda: asyncio.run(_run(args)))
    return run_console("ensemble-eval", work, (EnsembleError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
