"""Metrics of routing outcomes, and the report as a terminal table, JSON and a PNG chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.eval.dataset import ANSWER
from agents.eval.runner import Outcome

INVALID = "invalid"  # the chosen label of a decision that fell back or failed


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


def group_metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Accuracy, valid-decision rate, retries, fallbacks, errors, hops and latency of some outcomes."""
    n = len(outcomes)
    seconds = [o.seconds for o in outcomes if o.error is None]
    decided = [o for o in outcomes if o.error is None and not o.fell_back]
    return {
        "n": n,
        "accuracy": _rate(sum(o.correct for o in outcomes), n),
        "valid_rate": _rate(sum(o.valid_first for o in outcomes), n),
        "retried": sum(o.error is None and o.attempts > 1 and not o.fell_back for o in outcomes),
        "fell_back": sum(o.fell_back for o in outcomes),
        "errors": sum(o.error is not None for o in outcomes),
        "hops_mean": round(statistics.fmean([o.hops for o in decided]), 3) if decided else None,
        "latency_mean": round(statistics.fmean(seconds), 3) if seconds else None,
        "latency_p50": _percentile(seconds, 0.5),
        "latency_p95": _percentile(seconds, 0.95),
    }


def confusion(outcomes: Sequence[Outcome], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows: expected label; columns: chosen (`answer`: no hand-off, `invalid`: no usable decision).

    A multi-specialist item counts once in every (expected, chosen) pair of its labels.
    """
    columns = [*labels, INVALID]
    matrix = {row: dict.fromkeys(columns, 0) for row in labels}
    for o in outcomes:
        rows = o.expected or [ANSWER]
        chosen = [INVALID] if o.error is not None or o.fell_back else (o.chosen or [ANSWER])
        for row in rows:
            for column in chosen:
                matrix[row][column] += 1
    return matrix


def specialist_metrics(outcomes: Sequence[Outcome], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per label: how often it was expected and chosen, recall and precision."""
    result: dict[str, dict[str, Any]] = {}
    for label in labels:
        expected = [o for o in outcomes if label in (o.expected or [ANSWER])]
        usable = [o for o in outcomes if o.error is None and not o.fell_back]
        chosen = [o for o in usable if label in (o.chosen or [ANSWER])]
        hits = [o for o in chosen if label in (o.expected or [ANSWER])]
        result[label] = {
            "expected": len(expected),
            "chosen": len(chosen),
            "recall": _rate(len(hits), len(expected)),
            "precision": _rate(len(hits), len(chosen)),
        }
    return result


def stage_metrics(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Which stage decided how often, its accuracy, and the time of the routing stages where no model ran."""
    stages: dict[str, Any] = {}
    for stage in ("command", "phrase", "facts", "fast", "model"):
        decided = [o for o in outcomes if o.stage == stage]
        stages[stage] = {"n": len(decided), "accuracy": _rate(sum(o.correct for o in decided), len(decided))}
    quick = [o.fast_seconds * 1000 for o in outcomes if o.stage == "fast" and o.fast_seconds is not None]
    cpu = [o.fast_cpu_seconds * 1000 for o in outcomes if o.stage == "fast" and o.fast_cpu_seconds is not None]
    return {
        "decided_by": stages,
        "model_calls": sum(o.attempts for o in outcomes if o.stage == "model"),
        "fast_p50_ms": _percentile(quick, 0.5),
        "fast_p95_ms": _percentile(quick, 0.95),
        "fast_cpu_p50_ms": _percentile(cpu, 0.5),
    }


def summarize(
    outcomes: Sequence[Outcome],
    categories: Sequence[str],
    specialists: Sequence[str],
    tags: dict[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    labels = [ANSWER, *specialists]
    tagged: dict[str, list[Outcome]] = {}
    for o in outcomes:
        for tag in (tags or {}).get(o.id, ()):
            tagged.setdefault(tag, []).append(o)
    return {
        "by_tag": {tag: group_metrics(group) for tag, group in sorted(tagged.items())},
        "router": stage_metrics(outcomes) if any(o.stage for o in outcomes) else None,
        "overall": group_metrics(outcomes),
        "by_category": {c: group_metrics([o for o in outcomes if o.category == c]) for c in categories},
        "by_specialist": specialist_metrics(outcomes, labels),
        "confusion": confusion(outcomes, labels),
    }


# --- rendering ------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def render_variant(name: str, result: dict[str, Any]) -> str:
    """One variant's tables: per category, per specialist, and the confusion matrix."""
    summary = result["summary"]
    header = [
        "category",
        "n",
        "accuracy",
        "valid 1st",
        "retried",
        "fell back",
        "errors",
        "hops",
        "p50 s",
        "p95 s",
    ]

    def row(label: str, m: dict[str, Any]) -> list[str]:
        return [
            label,
            str(m["n"]),
            _fmt(m["accuracy"]),
            _fmt(m["valid_rate"]),
            str(m["retried"]),
            str(m["fell_back"]),
            str(m["errors"]),
            _fmt(m["hops_mean"]),
            _fmt(m["latency_p50"], 1),
            _fmt(m["latency_p95"], 1),
        ]

    rows = [row(c, m) for c, m in summary["by_category"].items()] + [row("all", summary["overall"])]
    spec_rows = [
        [label, str(m["expected"]), str(m["chosen"]), _fmt(m["recall"]), _fmt(m["precision"])]
        for label, m in summary["by_specialist"].items()
    ]
    matrix = summary["confusion"]
    columns = list(next(iter(matrix.values())).keys()) if matrix else []
    conf_rows = [[label, *(str(counts[c]) for c in columns)] for label, counts in matrix.items()]
    return "\n".join(
        [
            f"variant {name}",
            "",
            _table(header, rows),
            "",
            _table(["specialist", "expected", "chosen", "recall", "precision"], spec_rows),
            "",
            "confusion (rows: expected, columns: chosen)",
            _table(["expected", *columns], conf_rows),
        ]
    )


def render(report: dict[str, Any]) -> str:
    """The whole report as plain-text tables."""
    meta = report["meta"]
    parts = [
        f"Routing evaluation: {meta['items']} requests from {meta['dataset']}",
        f"supervisor: {meta['model']} at {meta['base_url']} (decisions by {meta['structured_output']})",
        f"specialists offered as available: {', '.join(meta['specialists'])}",
        "",
    ]
    variants = report["variants"]
    for name, result in variants.items():
        parts += [render_variant(name, result), ""]
    routed = {name: r for name, r in variants.items() if r["summary"].get("router")}
    if routed:
        tags = sorted({t for r in routed.values() for t in r["summary"].get("by_tag", {})})
        header = ["router mode", "accuracy", "valid", *tags, "by phrase", "by facts", "by fast", "by model",
                  "model calls", "fast p50 ms", "fast CPU p50 ms", "p50 s"]
        rows = []
        for name, r in routed.items():
            summary, stages = r["summary"], r["summary"]["router"]
            by_tag = summary.get("by_tag", {})
            rows.append([
                name,
                _fmt(summary["overall"]["accuracy"]),
                _fmt(summary["overall"]["valid_rate"]),
                *(_fmt(by_tag[t]["accuracy"]) if t in by_tag else "-" for t in tags),
                *(str(stages["decided_by"][s]["n"]) for s in ("phrase", "facts", "fast", "model")),
                str(stages["model_calls"]),
                _fmt(stages["fast_p50_ms"], 1),
                _fmt(stages.get("fast_cpu_p50_ms"), 1),
                _fmt(summary["overall"]["latency_p50"], 3),
            ])
        parts += ["router modes side by side (fast p50 ms: routing wall time where the fast stage decided, no "
                  "model call; fast CPU: the process's CPU time in it)",
                  _table(header, rows), ""]

    if len(variants) > 1:
        categories = list(next(iter(variants.values()))["summary"]["by_category"])
        header = ["category", *(f"{v} acc" for v in variants), *(f"{v} valid" for v in variants)]
        rows = []
        for c in [*categories, "all"]:
            picked = [
                r["summary"]["overall"] if c == "all" else r["summary"]["by_category"][c]
                for r in variants.values()
            ]
            rows.append([c, *(_fmt(m["accuracy"]) for m in picked), *(_fmt(m["valid_rate"]) for m in picked)])
        parts += ["variants side by side", _table(header, rows), ""]
    configured = (report["meta"].get("router") or {}).get("mode", "cascade")
    if configured in variants and variants[configured]["summary"].get("router"):
        overall = variants[configured]["summary"]["overall"]
        parts += [
            f"the router as configured ({configured}): accuracy {_fmt(overall['accuracy'])} on {overall['n']} "
            f"requests, valid {_fmt(overall['valid_rate'])}"
        ]
    return "\n".join(parts).rstrip() + "\n"


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Accuracy and valid-decision rate per category for each variant, and each variant's confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = report["variants"]
    names = list(variants)
    first = variants[names[0]]["summary"]
    categories = [*first["by_category"], "all"]
    fig = plt.figure(figsize=(max(10.0, 5.5 * len(names)), 10.5), layout="constrained")
    grid = fig.add_gridspec(2, len(names), height_ratios=[1, 1.25])
    bars = fig.add_subplot(grid[0, :])
    width = 0.8 / len(names)
    xs = range(len(categories))
    for i, name in enumerate(names):
        summary = variants[name]["summary"]
        metrics = [summary["overall"] if c == "all" else summary["by_category"][c] for c in categories]
        acc = [m["accuracy"] or 0.0 for m in metrics]
        valid = [m["valid_rate"] or 0.0 for m in metrics]
        offsets = [x - 0.4 + width * (i + 0.5) for x in xs]
        bars.bar(offsets, acc, width * 0.9, label=f"{name}: routing accuracy")
        bars.scatter(
            offsets,
            valid,
            marker="_",
            s=300,
            linewidths=2.5,
            color="black" if i == 0 else f"C{i + 3}",
            label=f"{name}: valid 1st attempt",
            zorder=3,
        )
    labels = [
        f"{c}\n(n={(first['overall'] if c == 'all' else first['by_category'][c])['n']})" for c in categories
    ]
    bars.set_xticks(list(xs), labels)
    bars.set_ylim(0, 1.25)
    bars.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    bars.set_ylabel("rate")
    meta = report["meta"]
    bars.set_title(f"Routing: {meta['model']} ({meta['structured_output']}), {meta['items']} requests")
    bars.legend(loc="upper right", fontsize=8, ncols=2)
    bars.grid(axis="y", alpha=0.3)
    for i, name in enumerate(names):
        matrix = variants[name]["summary"]["confusion"]
        rows = list(matrix)
        columns = list(matrix[rows[0]])
        values = [[matrix[r][c] for c in columns] for r in rows]
        ax = fig.add_subplot(grid[1, i])
        # colour: share of the row (items expecting that label); text: the count
        shares = [[v / (sum(line) or 1) for v in line] for line in values]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        for y, line in enumerate(values):
            for x, value in enumerate(line):
                if value:
                    ax.text(
                        x,
                        y,
                        str(value),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if shares[y][x] > 0.5 else "black",
                    )
        ax.set_xlabel("chosen")
        ax.set_ylabel("expected")
        ax.set_title(f"confusion — {name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
