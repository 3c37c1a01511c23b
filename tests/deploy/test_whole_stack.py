"""The whole stack per environment, rendered and checked as a whole (issue 18: the first sync must work).

Every invariant of tests/deploy/invariants.py holds for dev, staging and prod, rendered with the upstream
charts' stand-ins (always) and with the real upstream charts (when unpacked in the cache; skipped with the
list of missing charts otherwise). Then each defect the issue found is put back, and the check that
guards against it must fail.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy import invariants, upstream
from tests.deploy.conftest import DEPLOY, ENVS, REPO, elements, render_chart
from tests.deploy.stack import Stack, Upstream, render_stack

MODES: list[Upstream] = ["stand-ins", "charts"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Upstream:
    if request.param == "charts":
        missing = upstream.missing_charts()
        if missing:
            pytest.skip(f"upstream charts not unpacked in {upstream.cache_dir()}: {', '.join(missing)} "
                        "(deploy/upstream-charts.yaml says how to get them)")
    return request.param  # type: ignore[no-any-return]


def put(values: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted key in a values tree, making the maps on the way."""
    *parents, last = path.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def patched(**changes: Callable[[dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """A values patch for render_stack: `changes[app](values)` edits that Application's values in place."""

    def patch(app: str, values: dict[str, Any]) -> dict[str, Any]:
        values = copy.deepcopy(values)
        if app in changes:
            changes[app](values)
        return values

    return patch


def _gpu_pods(stack: Stack) -> list[str]:
    return [w["metadata"]["name"] for _, w, t in invariants.pod_templates(stack) if invariants._requests_gpu(t["spec"])]


@pytest.mark.parametrize("env", ENVS)
def test_the_whole_stack_keeps_every_invariant(env: str, mode: Upstream) -> None:
    stack = render_stack(env, upstream_mode=mode)
    problems = invariants.all_problems(stack)
    assert {k: v for k, v in problems.items() if v} == {}
    # the checks had something to check
    assert len(_gpu_pods(stack)) == 4
    assert len(list(invariants._claims(stack))) >= 3
    assert {n.name for n in invariants.nodepools(stack)} == {"gpu", "cpu"}
    assert all(invariants._gpu_agents(stack).values())
    assert sum(1 for _ in stack.objects()) >= (60 if mode == "stand-ins" else 300)


# --- each defect of the issue, put back --------------------------------------------------------------------
def test_argo_server_with_sso_but_no_sso_settings_is_refused(mode: Upstream) -> None:
    def sso_without_settings(v: dict[str, Any]) -> None:
        put(v, "server.authModes", ["sso", "client"])

    stack = render_stack("dev", upstream_mode=mode, patch=patched(**{"argo-workflows": sso_without_settings}))
    (problem,) = invariants.operator_config_problems(stack)
    assert "server.authModes has `sso`" in problem and "server.sso.enabled" in problem

    def sso_configured(v: dict[str, Any]) -> None:
        put(v, "server.authModes", ["sso", "client"])
        v["server"]["sso"] = {"enabled": True, "issuer": "https://login.example.com",
                              "redirectUrl": "https://argo.example.com/oauth2/callback",
                              "clientId": {"name": "argo-server-sso", "key": "client-id"},
                              "clientSecret": {"name": "argo-server-sso", "key": "client-secret"}}

    stack = render_stack("dev", upstream_mode=mode, patch=patched(**{"argo-workflows": sso_configured}))
    assert invariants.operator_config_problems(stack) == []


def test_device_plugin_with_the_charts_default_affinity_never_reaches_gpu_nodes(mode: Upstream) -> None:
    def chart_default(v: dict[str, Any]) -> None:
        del v["affinity"]  # the chart's own: NFD/GFD labels, which nothing sets here

    stack = render_stack("dev", upstream_mode=mode, patch=patched(**{"nvidia-device-plugin": chart_default}))
    problems = invariants.gpu_placement_problems(stack)
    assert len(problems) == 4, problems  # every GPU server
    assert all("the NVIDIA device plugin" in p and "feature.node.kubernetes.io/pci-10de.present" in p
               for p in problems), problems


def test_dcgm_exporter_with_the_charts_defaults_misses_gpu_nodes(mode: Upstream) -> None:
    def chart_default(v: dict[str, Any]) -> None:
        del v["nodeSelector"], v["tolerations"]

    stack = render_stack("prod", upstream_mode=mode, patch=patched(**{"dcgm-exporter": chart_default}))
    problems = invariants.gpu_placement_problems(stack)
    assert problems and all("the DCGM exporter" in p and "taint nvidia.com/gpu" in p for p in problems), problems


def test_a_gpu_server_that_fits_no_node_pool_is_reported() -> None:
    def wrong_gpu(v: dict[str, Any]) -> None:
        put(v, "gpu.gpuNames", ["h100"])  # no p5 in the GPU NodePool

    stack = render_stack("dev", patch=patched(**{"torchserve-sdxl": wrong_gpu}))
    (problem,) = invariants.gpu_placement_problems(stack)
    assert "torchserve-sdxl" in problem and "fits no NodePool" in problem and "instance-gpu-name" in problem


@pytest.mark.parametrize("env", ENVS)
def test_without_a_default_storage_class_milvus_volumes_stay_pending(env: str, mode: Upstream) -> None:
    def not_default(v: dict[str, Any]) -> None:
        put(v, "storage.gp3.default", False)

    stack = render_stack(env, upstream_mode=mode, patch=patched(platform=not_default))
    problems = invariants.storage_problems(stack)
    assert problems and all("names no StorageClass" in p for p in problems), problems
    assert any("etcd" in p for p in problems), problems
    if env == "prod":
        assert any("pulsarv3-bookie" in p for p in problems), problems
    else:
        assert any("minio" in p for p in problems), problems


def test_two_default_storage_classes_and_an_unknown_class_are_reported() -> None:
    stack = render_stack("staging")
    platform = stack.apps["platform"]
    efs = next(o for o in platform.objects if o["kind"] == "StorageClass" and o["metadata"]["name"] == "efs-sc")
    efs["metadata"]["annotations"] = {invariants.DEFAULT_CLASS: "true"}
    assert any("2 default StorageClasses" in p for p in invariants.storage_problems(stack))
    platform.objects.remove(efs)
    problems = invariants.storage_problems(stack)
    assert problems == ["ensemble: PersistentVolumeClaim/ensemble-data names StorageClass efs-sc, which nothing "
                        "in the stack creates"]


def test_llava_without_its_vision_tower_in_the_mirror_cannot_load() -> None:
    def hub_vision_tower(v: dict[str, Any]) -> None:
        v["weights"]["models"] = [m for m in v["weights"]["models"] if m["repo"] != "openai/clip-vit-large-patch14-336"]
        del v["sglang"]["modelOverrides"]

    stack = render_stack("prod", patch=patched(**{"sglang-llava": hub_vision_tower}))
    (problem,) = invariants.offline_file_problems(stack)
    assert "mm_vision_tower: openai/clip-vit-large-patch14-336" in problem and "HF_HUB_OFFLINE=1" in problem

    def overridden_but_not_mirrored(v: dict[str, Any]) -> None:
        v["weights"]["models"] = [m for m in v["weights"]["models"] if m["repo"] != "openai/clip-vit-large-patch14-336"]

    stack = render_stack("prod", patch=patched(**{"sglang-llava": overridden_but_not_mirrored}))
    (problem,) = invariants.offline_file_problems(stack)
    assert "/models/clip-vit-large-patch14-336: not a mirrored cache entry" in problem


def test_a_tokenizer_mirror_without_the_image_processor_config_is_refused() -> None:
    def tokenizer_only(v: dict[str, Any]) -> None:
        for m in v["weights"]["models"]:
            if m["repo"] == "llava-hf/llava-1.5-7b-hf":
                m["allowPatterns"] = "tokenizer*,special_tokens_map.json,*.model"  # what docs/deploy.md had

    stack = render_stack("dev", patch=patched(**{"sglang-llava": tokenizer_only}))
    problems = invariants.offline_file_problems(stack)
    assert any("--tokenizer-path loads preprocessor_config.json" in p for p in problems), problems
    assert any("--tokenizer-path loads config.json" in p for p in problems), problems


def test_an_external_secret_rendered_by_two_applications_is_refused(mode: Upstream) -> None:
    def shared_name(v: dict[str, Any]) -> None:
        put(v, "apiKey.secretName", "tabbyapi-api-key")  # both TabbyAPI releases, as before

    stack = render_stack("dev", upstream_mode=mode,
                         patch=patched(**{"tabbyapi-mixtral": shared_name, "tabbyapi-codellama": shared_name}))
    assert invariants.duplicate_problems(stack) == [
        "ExternalSecret/tabbyapi-api-key in ensemble-models is rendered by 2 Applications: tabbyapi-mixtral, "
        "tabbyapi-codellama"
    ]


def test_do_not_disrupt_pods_on_a_pool_without_termination_grace_period_are_reported() -> None:
    stack = render_stack("prod")
    pool = next(o for _, o in stack.of_kind("NodePool") if o["metadata"]["name"] == "gpu")
    del pool["spec"]["template"]["spec"]["terminationGracePeriod"]
    problems = invariants.disruption_problems(stack)
    assert len(problems) == 4 and all("NodePool gpu, which has no terminationGracePeriod" in p for p in problems)
    # and the chart refuses GPU node pool values without one
    el = next(e for e in elements("prod") if e["name"] == "platform")
    # (a null removes the chart's default, as in a values file)
    values = {**yaml.safe_load((DEPLOY / "values" / "prod" / "platform.yaml").read_text()),
              "gpu": {"terminationGracePeriod": None}}
    with pytest.raises(Exception, match="terminationGracePeriod"):
        render_chart(REPO / el["path"], values, "platform", el["namespace"])


def test_an_automated_sync_policy_under_rolling_sync_is_dead_configuration() -> None:
    appset = copy.deepcopy(render_stack("dev").appset)
    assert invariants.sync_policy_problems(appset) == []
    appset["spec"]["template"]["spec"]["syncPolicy"]["automated"] = {"prune": True, "selfHeal": True}
    (problem,) = invariants.sync_policy_problems(appset)
    assert "RollingSync disables auto-sync" in problem and "selfHeal" in problem


def test_a_chart_version_that_was_never_released_is_refused() -> None:
    apps = elements("dev")
    for el in apps:
        if el["name"] == "argo-workflows":
            el["targetRevision"] = "2.0.1"
    (problem,) = invariants.pin_problems("dev", apps=apps)
    assert "argo-workflows 2.0.1 is pinned" in problem and "1.0.18" in problem
    lock = upstream.lock()
    lock.pop("dcgm-exporter")
    assert invariants.pin_problems("dev", lock=lock) == [
        "Application dcgm-exporter: chart dcgm-exporter is not in deploy/upstream-charts.yaml"
    ]


def test_prometheus_that_ignores_our_service_monitors_is_refused() -> None:
    def own_only(v: dict[str, Any]) -> None:
        put(v, "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues", True)

    stack = render_stack("dev", patch=patched(**{"kube-prometheus-stack": own_only}))
    (problem,) = invariants.operator_config_problems(stack)
    assert "serviceMonitorSelectorNilUsesHelmValues" in problem


def test_dashboard_and_scraping_problems_are_reported() -> None:
    def no_scrape(v: dict[str, Any]) -> None:
        put(v, "metrics.serviceMonitor.enabled", False)
        put(v, "metrics.dashboard.labels", {"grafana_dashboard": "0"})

    stack = render_stack("dev", patch=patched(ensemble=no_scrape))
    problems = invariants.observability_problems(stack, invariants.app_metric_names())
    assert any("no ServiceMonitor scrapes the app" in p for p in problems), problems
    assert any("lacks the label Grafana's sidecar loads dashboards by (grafana_dashboard=1)" in p for p in problems)
    problems = invariants.observability_problems(stack, invariants.app_metric_names() - {"ensemble_turns_total"})
    assert any("plots ensemble_turns_total, which nothing exports" in p for p in problems), problems


# --- the weight mirror as documented ---------------------------------------------------------------------
def test_docs_mirror_exactly_the_weights_the_servers_load() -> None:
    """docs/deploy.md's mirror commands are the values' weights.models: same repos, revisions, patterns."""
    text = (REPO / "docs" / "deploy.md").read_text()
    documented = set()
    for line in re.findall(r"^m (\S+) (\S+)(?: '([^']*)')?$", text, re.M):
        documented.add((line[0], line[1], line[2] or ""))
    wanted = set()
    for path in sorted((DEPLOY / "values" / "models").glob("*.yaml")):
        for m in yaml.safe_load(path.read_text())["weights"]["models"]:
            assert m["s3Prefix"] == f"models/{m['repo']}/{m['revision']}", m
            wanted.add((m["repo"], m["revision"], m.get("allowPatterns", "")))
    assert documented == wanted
