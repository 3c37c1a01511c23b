"""The real upstream charts, where they are unpacked in the cache: they are the versions we pin, they render
with our values, and the stand-ins of tests/deploy/upstream.py agree with them on every field our
invariants read (so the stand-ins that CI uses without the charts say what the charts would do)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.deploy import invariants, upstream
from tests.deploy.conftest import ENVS, KUBE_VERSION, crd_schema_path, is_builtin
from tests.deploy.stack import Stack, render_stack


@pytest.fixture(scope="module", autouse=True)
def _charts_present() -> None:
    missing = upstream.missing_charts()
    if missing:
        pytest.skip(f"upstream charts not unpacked in {upstream.cache_dir()}: {', '.join(missing)} "
                    "(deploy/upstream-charts.yaml says how to get them)")


def test_the_cached_charts_are_the_pinned_versions() -> None:
    for name, entry in upstream.lock().items():
        chart = yaml.safe_load((upstream.chart_dir(name, entry["version"]) / "Chart.yaml").read_text())
        assert (chart["name"], str(chart["version"]), str(chart["appVersion"])) == (
            name, str(entry["version"]), str(entry["appVersion"])), name


def _scheduling(stack: Stack, chart: str, container: str | None) -> list[dict[str, Any]]:
    out = []
    for app, ds in stack.of_kind("DaemonSet"):
        pod = ds["spec"]["template"]["spec"]
        if app.chart == chart and (container is None or container in {c["name"] for c in pod["containers"]}):
            out.append({k: pod.get(k) for k in ("nodeSelector", "affinity", "tolerations", "priorityClassName")})
    return out


def _claims(stack: Stack, app: str) -> set[tuple[str, str | None]]:
    return {(where.split(": ", 1)[1], spec.get("storageClassName"))
            for where, spec in invariants._claims(stack) if where.startswith(f"{app}: ")}


CHECKED_VALUES = {
    "argo-workflows": ["server.authModes", "server.authMode", "server.sso.enabled", "server.sso.issuer",
                       "server.sso.redirectUrl", "server.sso.clientId", "server.sso.clientSecret"],
    "karpenter": ["settings.clusterName"],
    "aws-load-balancer-controller": ["clusterName", "region", "vpcId"],
    "kube-prometheus-stack": ["prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues",
                              "grafana.sidecar.dashboards.enabled", "grafana.sidecar.dashboards.label",
                              "grafana.sidecar.dashboards.labelValue", "grafana.sidecar.dashboards.searchNamespace"],
}


def _defects() -> dict[str, Any]:
    """Values patches that bring back upstream defaults: the stand-ins must follow the charts there too."""

    def drop(app: str, *keys: str) -> Any:
        def patch(name: str, values: dict[str, Any]) -> dict[str, Any]:
            values = copy.deepcopy(values)
            if name == app:
                for key in keys:
                    values.pop(key, None)
            if name == "platform":
                values.setdefault("storage", {}).setdefault("gp3", {})["default"] = app != "platform"
            return values

        return patch

    return {
        "as deployed": None,
        "device plugin with the chart's affinity": drop("nvidia-device-plugin", "affinity"),
        "dcgm exporter with the chart's scheduling": drop("dcgm-exporter", "nodeSelector", "tolerations"),
        "no default storage class": drop("platform"),
    }


@pytest.mark.parametrize("variant", list(_defects()))
@pytest.mark.parametrize("env", ENVS)
def test_stand_ins_agree_with_the_real_charts(env: str, variant: str) -> None:
    patch = _defects()[variant]
    real = render_stack(env, upstream_mode="charts", patch=patch)
    stand = render_stack(env, upstream_mode="stand-ins", patch=patch)
    assert _scheduling(stand, "nvidia-device-plugin", "nvidia-device-plugin-ctr") == _scheduling(
        real, "nvidia-device-plugin", "nvidia-device-plugin-ctr")
    assert _scheduling(stand, "dcgm-exporter", None) == _scheduling(real, "dcgm-exporter", None)
    for stack in (real, stand):
        assert any(o["kind"] == "ServiceMonitor" for o in stack.apps["dcgm-exporter"].objects)
    assert _claims(stand, "ensemble-data") == _claims(real, "ensemble-data")
    for chart, paths in CHECKED_VALUES.items():
        for path in paths:
            assert upstream.get(stand.apps[chart].values, path) == upstream.get(real.apps[chart].values, path), (
                chart, path)
    # and so every check concludes the same on both
    assert invariants.all_problems(stand) == invariants.all_problems(real)


@pytest.mark.parametrize("env", ENVS)
def test_upstream_objects_rendered_with_our_values_validate(env: str, crd_validators: Any) -> None:
    """What the upstream charts render from our values is valid for Kubernetes 1.33 (strict), and their
    custom resources are, where tests/specs has the CRD's schema (ServiceMonitor, ScaledObject, ...)."""
    import kubernetes_validate

    checked = 0
    for app, obj in render_stack(env, upstream_mode="charts").objects():
        if "upstream" not in app.origin:
            continue
        where = f"{env} {app.name} {obj['kind']}/{obj['metadata']['name']}"
        if is_builtin(obj):
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message}")
        elif crd_schema_path(obj).is_file():
            errors = list(crd_validators(obj).iter_errors(obj))
            assert not errors, f"{where}: {errors[0].message}"
        else:
            continue
        checked += 1
    assert checked >= 200
