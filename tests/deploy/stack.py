"""The whole stack of one environment, rendered: every Application its ApplicationSet generates.

Our charts are rendered by Helm with their layered values files (as in conftest); the plain manifests of
deploy/argo-workflows are read as they are; each upstream chart is rendered by Helm from the unpacked chart
in the cache (`upstream="charts"`) or replaced by its stand-in (`upstream="stand-ins"`, tests/deploy/upstream.py).
The Milvus dependency of ensemble-data is handled the same way: in the cache, it is put in the chart's
`charts/` as `helm dependency build` would, and the whole chart is rendered.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tests.deploy import upstream
from tests.deploy.conftest import DEPLOY, REPO, elements, helm, layered_values, load_yaml_docs

Upstream = Literal["stand-ins", "charts"]
# Called with (application name, its layered values); returns the values to render with (negative tests).
Patch = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass
class AppRender:
    name: str  # the Application's element name (without the environment prefix)
    namespace: str  # its destination namespace
    chart: str  # chart name, or the folder of plain manifests
    origin: str  # "ours", "upstream chart" or "stand-in"
    values: dict[str, Any]  # the release's effective values (chart defaults, then our files)
    objects: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stack:
    env: str
    apps: dict[str, AppRender]
    appset: dict[str, Any]

    def objects(self) -> Iterator[tuple[AppRender, dict[str, Any]]]:
        for app in self.apps.values():
            for obj in app.objects:
                yield app, obj

    def of_kind(self, kind: str) -> Iterator[tuple[AppRender, dict[str, Any]]]:
        return ((a, o) for a, o in self.objects() if o.get("kind") == kind)


class ChartsMissing(LookupError):
    """The upstream charts are not unpacked in the cache."""


def _objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, text in sorted(manifests.items()):
        if not name.endswith((".yaml", ".yml")):
            continue  # NOTES.txt and the like
        for doc in load_yaml_docs(text):
            out.extend((doc.get("items") or []) if doc.get("kind") == "List" else [doc])
    return out


def _render(chart_path: Path, values: dict[str, Any], release: str, namespace: str) -> tuple[dict[str, Any], list]:
    with helm.Chart.load(chart_path) as chart:
        merged = chart.merge_values(values)
        manifests = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    return merged, _objects(manifests)


def _ensemble_data_with_milvus(values: dict[str, Any], release: str, namespace: str) -> tuple[dict[str, Any], list]:
    """deploy/charts/ensemble-data with the Milvus chart from the cache in charts/ (helm dependency build)."""
    pin = upstream.lock()["milvus"]["version"]
    source = upstream.chart_dir("milvus", pin)
    if not (source / "Chart.yaml").is_file():
        raise ChartsMissing(f"milvus-{pin}")
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "ensemble-data"
        shutil.copytree(DEPLOY / "charts" / "ensemble-data", chart)
        shutil.copytree(source, chart / "charts" / "milvus")
        return _render(chart, values, release, namespace)


def render_stack(env: str, *, upstream_mode: Upstream = "stand-ins", patch: Patch | None = None) -> Stack:
    """Every Application of `env`, rendered; `patch` may change an Application's values first."""
    apps: dict[str, AppRender] = {}
    for el in elements(env):
        name, namespace = el["name"], el["namespace"]
        values = layered_values(el)
        if patch is not None:
            values = patch(name, values)
        if el["chart"]:  # an upstream chart from a Helm repository
            chart = el["chart"]
            if upstream_mode == "charts":
                path = upstream.chart_dir(chart, el["targetRevision"])
                if not (path / "Chart.yaml").is_file():
                    raise ChartsMissing(f"{chart}-{el['targetRevision']}")
                merged, objects = _render(path, values, name, namespace)
                apps[name] = AppRender(name, namespace, chart, "upstream chart", merged, objects)
            else:
                merged = upstream.effective(chart, values)
                objects = upstream.STAND_INS[chart](name, namespace, merged)
                apps[name] = AppRender(name, namespace, chart, "stand-in", merged, objects)
        elif el["path"] == "deploy/argo-workflows":
            objects = [doc for p in sorted((REPO / el["path"]).glob("*.yaml")) for doc in load_yaml_docs(p.read_text())]
            apps[name] = AppRender(name, namespace, "argo-workflows (plain)", "ours", {}, objects)
        else:
            chart_path = REPO / el["path"]
            if chart_path.name == "ensemble-data" and upstream_mode == "charts":
                merged, objects = _ensemble_data_with_milvus(values, name, namespace)
                apps[name] = AppRender(name, namespace, chart_path.name, "ours + upstream chart", merged, objects)
                continue
            merged, objects = _render(chart_path, values, name, namespace)
            if chart_path.name == "ensemble-data" and merged.get("milvus", {}).get("enabled"):
                milvus = upstream.effective("milvus", merged["milvus"])
                objects = objects + upstream.milvus_objects(name, namespace, milvus)
            apps[name] = AppRender(name, namespace, chart_path.name, "ours", merged, objects)
    appset = yaml.safe_load((DEPLOY / "argocd" / "root" / f"applicationset-{env}.yaml").read_text())
    return Stack(env, apps, appset)
