"""Every chart renders for every environment, and every object validates against its schema:
Kubernetes' own (kubernetes-validate, strict) or the CRD's JSON schema from tests/specs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.conftest import (
    CRD_SCHEMAS,
    DEPLOY,
    ENVS,
    KUBE_VERSION,
    REPO,
    crd_schema_path,
    elements,
    is_builtin,
    plain_manifests,
    values_path,
)

CHARTS = sorted(p.parent.name for p in (DEPLOY / "charts").glob("*/Chart.yaml"))


def _all_objects(renders: Any, generated_apps: Any, env: str) -> list[tuple[str, dict[str, Any]]]:
    objs = [(f"{r.app}", o) for (e, _), r in renders.items() if e == env for o in r.objects]
    objs += [(f"generated {a['metadata']['name']}", a) for a in generated_apps[env]]
    return objs


def test_every_chart_has_a_values_schema_and_is_deployed_in_every_env() -> None:
    assert CHARTS == ["ensemble", "ensemble-data", "model-server", "platform"]
    for chart in CHARTS:
        assert (DEPLOY / "charts" / chart / "values.schema.json").is_file(), chart
    for env in ENVS:
        paths = {el["path"] for el in elements(env)}
        assert {f"deploy/charts/{c}" for c in CHARTS} <= paths, env


@pytest.mark.parametrize("env", ENVS)
def test_value_files_exist(env: str) -> None:
    for el in elements(env):
        for ref in el["valueFiles"]:
            optional = f"/{env}/models/" in ref or (el["chart"] and f"/{env}/" in ref)
            assert optional or values_path(ref).is_file(), f"{el['name']}: missing {ref}"


@pytest.mark.parametrize("env", ENVS)
def test_each_environment_renders_the_whole_stack(renders: Any, env: str) -> None:
    apps = {app for (e, app) in renders if e == env}
    assert apps == {
        "platform",
        "ensemble-data",
        "tabbyapi-mixtral",
        "tabbyapi-codellama",
        "sglang-llava",
        "tei-bge-small",
        "torchserve-sdxl",
        "ensemble",
    }
    for app in apps:
        assert renders[(env, app)].objects, f"{env}/{app} rendered nothing"


@pytest.mark.parametrize("env", ENVS)
def test_builtin_objects_validate_against_kubernetes_schemas(
    renders: Any, generated_apps: Any, env: str
) -> None:
    checked = 0
    for origin, obj in _all_objects(renders, generated_apps, env):
        if not is_builtin(obj):
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{env} {origin}: {obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("env", ENVS)
def test_custom_resources_validate_against_their_crd_schemas(
    renders: Any, generated_apps: Any, crd_validators: Any, env: str
) -> None:
    kinds = set()
    for origin, obj in _all_objects(renders, generated_apps, env):
        if is_builtin(obj):
            continue
        path = crd_schema_path(obj)
        assert path.is_file(), f"{origin}: no CRD schema for {obj['apiVersion']} {obj['kind']} at {path}"
        errors = sorted(crd_validators(obj).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{env} {origin} {obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )
        kinds.add(obj["kind"])
    assert {
        "Application",
        "ExternalSecret",
        "ScaledObject",
        "HTTPScaledObject",
        "ServiceMonitor",
        "NodePool",
        "EC2NodeClass",
        "ClusterSecretStore",
    } <= kinds


def test_plain_manifests_validate(crd_validators: Any) -> None:
    kinds = set()
    for path, obj in plain_manifests():
        where = path.relative_to(REPO)
        if is_builtin(obj):
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        else:
            schema = crd_schema_path(obj)
            assert schema.is_file(), f"{where}: no CRD schema {schema.relative_to(CRD_SCHEMAS)}"
            errors = list(crd_validators(obj).iter_errors(obj))
            assert not errors, f"{where} {obj['kind']}: " + "; ".join(
                f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
            )
        kinds.add(obj["kind"])
    assert {"Application", "ApplicationSet", "WorkflowTemplate", "Secret"} <= kinds


def test_a_crd_schema_violation_is_caught(crd_validators: Any) -> None:
    """The CRD check is not vacuous: a misspelt field in a ScaledObject is reported."""
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "minReplicas": 0, "triggers": []},
    }
    assert list(crd_validators(bad).iter_errors(bad))


def test_a_kubernetes_schema_violation_is_caught() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)
