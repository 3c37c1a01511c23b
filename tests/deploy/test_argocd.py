"""Argo CD: root app-of-apps, one ApplicationSet per environment, waves in the right order,
multi-source `$values` layering, and the same stack in every environment."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ENVS, appset, elements

WAVES = {
    "0": {
        "aws-load-balancer-controller",
        "karpenter",
        "external-secrets",
        "keda",
        "keda-add-ons-http",
        "kube-prometheus-stack",
        "nvidia-device-plugin",
        "dcgm-exporter",
        "argo-workflows",
    },
    "1": {"platform", "weight-cache-workflows"},
    "2": {"ensemble-data"},
    "3": {"tabbyapi-mixtral", "tabbyapi-codellama", "sglang-llava", "tei-bge-small", "torchserve-sdxl"},
    "4": {"ensemble"},
}


def test_root_app_syncs_the_applicationsets() -> None:
    root = yaml.safe_load((DEPLOY / "argocd" / "root.yaml").read_text())
    assert root["kind"] == "Application"
    assert root["spec"]["source"]["path"] == "deploy/argocd/root"
    names = sorted(p.name for p in (DEPLOY / "argocd" / "root").glob("applicationset-*.yaml"))
    assert names == [f"applicationset-{env}.yaml" for env in sorted(ENVS)]


@pytest.mark.parametrize("env", ENVS)
def test_sync_waves_order_operators_data_models_app(env: str, generated_apps: dict[str, list[Any]]) -> None:
    by_wave: dict[str, set[str]] = {}
    for el in elements(env):
        by_wave.setdefault(el["wave"], set()).add(el["name"])
    assert by_wave == WAVES
    steps = appset(env)["spec"]["strategy"]
    assert steps["type"] == "RollingSync"
    order = [s["matchExpressions"][0]["values"] for s in steps["rollingSync"]["steps"]]
    assert order == [["0"], ["1"], ["2"], ["3"], ["4"]]
    for app in generated_apps[env]:
        labels, ann = app["metadata"]["labels"], app["metadata"]["annotations"]
        assert labels["ensemble.io/wave"] == ann["argocd.argoproj.io/sync-wave"]
        assert labels["ensemble.io/env"] == env
        assert app["metadata"]["name"].startswith(f"{env}-")


@pytest.mark.parametrize("env", ENVS)
def test_multi_source_values_layering(env: str, generated_apps: dict[str, list[Any]]) -> None:
    for app in generated_apps[env]:
        sources = app["spec"]["sources"]
        assert len(sources) == 2, app["metadata"]["name"]
        chart_src, values_src = sources
        assert values_src["ref"] == "values"
        assert ("chart" in chart_src) != ("path" in chart_src)
        helm_cfg = chart_src.get("helm")
        if chart_src.get("path") == "deploy/argo-workflows":
            assert helm_cfg is None
            continue
        assert helm_cfg["valueFiles"] and all(
            f.startswith("$values/deploy/values/") for f in helm_cfg["valueFiles"]
        )
        assert any(f"/{env}/" in f for f in helm_cfg["valueFiles"]), "every app has an environment layer"
        if "chart" in chart_src:
            assert chart_src["targetRevision"][0].isdigit(), "upstream charts are pinned to a version"
        # RollingSync turns auto-sync off and starts each wave's syncs itself (issue 18): `automated` and
        # its selfHeal would be dead configuration; the retry policy is what its syncs use
        assert "automated" not in app["spec"]["syncPolicy"]
        assert app["spec"]["syncPolicy"]["retry"]["limit"] >= 5
        if app["spec"]["destination"]["namespace"] == "ensemble-models":
            labels = app["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_environments_deploy_the_same_components() -> None:
    names = {env: [el["name"] for el in elements(env)] for env in ENVS}
    assert names["dev"] == names["staging"] == names["prod"]
    versions = {
        env: {el["name"]: el["targetRevision"] for el in elements(env) if el["chart"]} for env in ENVS
    }
    assert versions["dev"] == versions["staging"] == versions["prod"]


def test_milvus_is_an_upstream_dependency_with_a_condition() -> None:
    chart = yaml.safe_load((DEPLOY / "charts" / "ensemble-data" / "Chart.yaml").read_text())
    (dep,) = chart["dependencies"]
    assert dep["name"] == "milvus" and dep["condition"] == "milvus.enabled"
    assert dep["repository"] == "https://zilliztech.github.io/milvus-helm/"
    assert dep["version"][0].isdigit()
    repos = list(yaml.safe_load_all((DEPLOY / "argocd" / "root" / "repositories.yaml").read_text()))
    assert dep["repository"] in {r["stringData"]["url"] for r in repos}


def test_applicationsets_are_what_the_generator_writes() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "argocd" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("env", ENVS)
def test_deleting_an_applicationset_keeps_what_it_deployed(env: str) -> None:
    assert appset(env)["spec"]["syncPolicy"]["preserveResourcesOnDeletion"] is True


def test_each_environment_s_applicationset_comes_from_the_branch_it_tracks() -> None:
    """main's root syncs dev and staging; prod's ApplicationSet comes from `release`, the branch prod's
    Applications track, so nothing merged to main (a chart version, a wave) reaches prod unreleased."""
    sys.path.insert(0, str(DEPLOY / "argocd"))
    import generate

    roots = [yaml.safe_load((DEPLOY / "argocd" / f).read_text()) for f in ("root.yaml", "root-prod.yaml")]
    files = sorted(p.name for p in (DEPLOY / "argocd" / "root").glob("applicationset-*.yaml"))
    synced: dict[str, str] = {}
    for root in roots:
        source = root["spec"]["source"]
        assert source["repoURL"] == generate.REPO_URL and source["path"] == "deploy/argocd/root"
        directory = source["directory"]
        for name in files:
            excluded = name == directory.get("exclude")
            included = directory.get("include") in (None, name)
            if included and not excluded:
                assert name not in synced, f"{name} synced by two roots"
                synced[name] = source["targetRevision"]
    assert synced == {f"applicationset-{env}.yaml": generate.ENVIRONMENTS[env]["revision"] for env in ENVS}
