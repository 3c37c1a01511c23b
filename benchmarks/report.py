"""Print the Markdown tables of docs/benchmarks.md ("Speed and load") from benchmarks/results/*.json.

Run: `.venv/bin/python -m benchmarks.report` after the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, table


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    start, end = m.get("loadavg_at_start", [0])[0], m.get("loadavg_at_end", [0])[0]
    return f"_{data['benchmark']}: {m['date']}, load average {start:.1f} at start, {end:.1f} at end._"


def orchestration(data: dict[str, Any]) -> str:
    rows = []
    for key, run in data["runs"].items():
        fw, ttft = run["framework_ms"], run["added_ttft_ms"]
        rows.append([key, fw["p50"], fw["p99"], ttft["p50"], ttft["p99"], run["cpu_ms"]["p50"],
                     ",".join(map(str, run["calls_per_turn"])),
                     ",".join(map(str, run.get("background_calls_per_turn", []))), fw["n"]])
    return table(["variant/turn", "framework p50 ms", "p99 ms", "added TTFT p50 ms", "p99 ms", "CPU ms/turn",
                  "model calls/turn", "+ background", "turns"], rows)


def load_table(data: dict[str, Any]) -> str:
    rows = [[s["system"], s["sessions"], s["added_ttft_p50"], s["added_ttft_p99"], s["first_turn_p50"],
             s["later_turns_p50"], s["last_token_lag_p50"], s["wire_over_text"] or float("nan"),
             s.get("frames_over_text") or float("nan"), s.get("server_cpu_ms_per_turn", float("nan")),
             s["model_calls_per_turn"]] for s in data["summary"]]
    return table(["system", "sessions", "added TTFT p50 ms", "p99 ms", "first turn p50", "later turns p50",
                  "last-token lag p50 ms", "wire/text", "frames/text", "server CPU ms/turn", "model calls/turn"],
                 rows)


def memory_table(data: dict[str, Any]) -> str:
    cfg = data["config"]
    rows = [[r["system"], f"{r['sessions_connected']} ({r.get('sessions_still_connected', '?')})", r["rss_fresh_mb"],
             r["rss_idle_mb"], r["idle_kib_per_session"],
             r["rss_after_turns_mb"], r["kib_per_active_session_after_turns"], r["rss_after_disconnect_mb"],
             r["probe_added_ttft_ms_with_all_connected"]] for r in data["runs"]]
    return table(["system", "idle sessions (still connected)", "RSS fresh MB", "RSS with all idle MB",
                  "KiB per idle session",
                  f"RSS after {cfg['turns']} turns x {cfg['active']} MB", "KiB per session after turns",
                  "RSS after disconnect MB", "probe added TTFT ms"], rows)


def cold_table(data: dict[str, Any]) -> str:
    rows = [[s["system"], s["ready_s"], s["first_turn_added_ttft_ms"], s["first_turn_total_s"]]
            for s in data["summary"]]
    out = table(["system", "spawn to ready s (median)", "first turn added TTFT ms", "connect + first turn s"], rows)
    imports = data.get("slowest_imports_s") or []
    if imports:
        out += "\n\nSlowest imports of one Ensemble start (cumulative s): " + ", ".join(
            f"{m} {s:.2f}" for m, s in imports[:10])
    return out


def main() -> int:
    for name, render in (("orchestration", orchestration), ("chainlit_load", load_table),
                         ("chainlit_load_fast_tokens", load_table), ("chainlit_load_long_answers", load_table),
                         ("chainlit_load_postgres", load_table), ("sessions_memory", memory_table),
                         ("cold_start", cold_table)):
        data = load(name)
        if data is None:
            print(f"<!-- {name}: no results in {Path(RESULTS).name}/ -->\n")
            continue
        print(f"#### Results: {name}\n\n{render(data)}\n\n{machine_line(data)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
