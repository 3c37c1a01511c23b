"""Copy deploy/charts/model-server/files/fill-cache.sh into fill-node-cache.yaml (one script, two users).

python deploy/argo-workflows/embed_fill_script.py           # rewrite fill-node-cache.yaml
python deploy/argo-workflows/embed_fill_script.py --check   # exit 1 if it holds another script
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent / "charts" / "model-server" / "files" / "fill-cache.sh"
WORKFLOW = HERE / "fill-node-cache.yaml"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def render() -> str:
    text = WORKFLOW.read_text()
    header = "".join(line for line in text.splitlines(keepends=True)[:5] if line.startswith("#"))
    workflow: dict[str, Any] = yaml.safe_load(text)
    fill_one = next(t for t in workflow["spec"]["templates"] if t["name"] == "fill-one")
    fill_one["container"]["command"][2] = SCRIPT.read_text()
    return header + yaml.dump(workflow, Dumper=_Dumper, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if WORKFLOW.read_text() != text:
            print(f"{WORKFLOW.name} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    WORKFLOW.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
