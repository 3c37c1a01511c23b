"""Offline renders of everything under deploy/, shared by the deploy tests (rendered once per session).

Charts are rendered the way Argo CD renders them: for every environment, each Application generated
by deploy/argocd/root/applicationset-<env>.yaml names its chart path and its `$values` files; the files
are layered in that order and the chart is rendered by Helm itself (helm-python-sdk, Helm as a library),
which also enforces each chart's values.schema.json.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk is not installed (pip install -e '.[deploy]')"
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SPECS = REPO / "tests" / "specs"
CRD_SCHEMAS = SPECS / "crd-schemas"
ENVS = ("dev", "staging", "prod")
KUBE_VERSION = "1.33"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's layering of values files: maps merge key by key, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def values_path(ref: str) -> Path:
    """`$values/deploy/values/x.yaml` (multi-source ref to this repo) -> a path in the work tree."""
    assert ref.startswith("$values/"), ref
    return REPO / ref.removeprefix("$values/")


@dataclass
class Rendered:
    env: str
    app: str  # Application name without the env prefix
    chart: str
    namespace: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.env}/{self.app}: expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


def appset(env: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "argocd" / "root" / f"applicationset-{env}.yaml").read_text())


def elements(env: str) -> list[dict[str, Any]]:
    return appset(env)["spec"]["generators"][0]["list"]["elements"]


def layered_values(element: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for ref in element["valueFiles"]:
        path = values_path(ref)
        if path.exists():  # the ApplicationSet sets ignoreMissingValueFiles for optional layers
            merged = deep_merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def render_chart(
    chart_dir: Path, values: dict[str, Any], release: str, namespace: str
) -> list[dict[str, Any]]:
    with helm.Chart.load(chart_dir) as chart:
        manifests = chart.render(values=values, name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for name, text in sorted(manifests.items()):
        if name.endswith("NOTES.txt"):
            continue
        objects.extend(load_yaml_docs(text))
    return objects


def _render_all() -> dict[tuple[str, str], Rendered]:
    out: dict[tuple[str, str], Rendered] = {}
    for env in ENVS:
        for el in elements(env):
            if not el["path"].startswith("deploy/charts/"):
                continue
            chart_dir = REPO / el["path"]
            objects = render_chart(chart_dir, layered_values(el), el["name"], el["namespace"])
            out[(env, el["name"])] = Rendered(env, el["name"], chart_dir.name, el["namespace"], objects)
    return out


@pytest.fixture(scope="session")
def renders() -> dict[tuple[str, str], Rendered]:
    return _render_all()


def render_appset_applications(env: str) -> list[dict[str, Any]]:
    """The Applications Argo CD's ApplicationSet controller would generate, with a real Go template
    engine: the template and templatePatch are rendered by Helm (text/template + sprig, as with
    `goTemplate: true`) with each list element as the data, then patched over the template."""
    spec = appset(env)["spec"]
    template_text = yaml.safe_dump(spec["template"], sort_keys=False)
    apps = []
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "appset"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("apiVersion: v2\nname: appset\nversion: 0.0.0\n")
        with_values = "{{- with .Values }}\n%s{{- end }}\n"
        (chart / "templates" / "template.yaml").write_text(with_values % template_text)
        (chart / "templates" / "patch.yaml").write_text(with_values % spec["templatePatch"])
        with helm.Chart.load(chart) as loaded:
            for el in spec["generators"][0]["list"]["elements"]:
                rendered = loaded.render(values=el, name="appset", namespace="argocd")
                base = yaml.safe_load(rendered["appset/templates/template.yaml"])
                patch = yaml.safe_load(rendered["appset/templates/patch.yaml"])
                app = deep_merge(base, patch)
                app = {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Application",
                    **app,
                    "metadata": {**app["metadata"], "namespace": "argocd"},
                }
                apps.append(app)
    return apps


@pytest.fixture(scope="session")
def generated_apps() -> dict[str, list[dict[str, Any]]]:
    return {env: render_appset_applications(env) for env in ENVS}


def plain_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every object kept as plain YAML (Argo CD root, ApplicationSets, WorkflowTemplates)."""
    for path in sorted([*(DEPLOY / "argocd").rglob("*.yaml"), *(DEPLOY / "argo-workflows").glob("*.yaml")]):
        if "bootstrap" in path.parts:
            continue  # Helm values for installing Argo CD, not a manifest
        for doc in load_yaml_docs(path.read_text()):
            yield path, doc


def crd_schema_path(obj: dict[str, Any]) -> Path:
    group, version = obj["apiVersion"].split("/")
    return CRD_SCHEMAS / group / f"{obj['kind'].lower()}_{version}.json"


def is_builtin(obj: dict[str, Any]) -> bool:
    api = obj["apiVersion"]
    return "/" not in api or "." not in api.split("/")[0] or api.split("/")[0].endswith(".k8s.io")


@pytest.fixture(scope="session")
def crd_validators() -> Any:
    assert CRD_SCHEMAS.is_dir(), f"CRD schemas missing at {CRD_SCHEMAS}"
    import jsonschema

    cache: dict[Path, Any] = {}

    def get(obj: dict[str, Any]) -> Any:
        path = crd_schema_path(obj)
        if path not in cache:
            schema = json.loads(path.read_text())
            cache[path] = jsonschema.Draft7Validator(schema)
        return cache[path]

    return get
