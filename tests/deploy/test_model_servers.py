"""Model servers: GPUs where they belong, weights from the node cache (never the hub), probes sized
for loading, pinned images, and the KEDA triggers each server kind scales on."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest

from tests.deploy.conftest import DEPLOY, ENVS, Rendered, elements, layered_values

MODELS = ("tabbyapi-mixtral", "tabbyapi-codellama", "sglang-llava", "tei-bge-small", "torchserve-sdxl")
GPU_MODELS = ("tabbyapi-mixtral", "tabbyapi-codellama", "sglang-llava", "torchserve-sdxl")
CASES = [(env, m) for env in ENVS for m in MODELS]


@pytest.fixture(params=CASES, ids=[f"{e}-{m}" for e, m in CASES])
def server(request: pytest.FixtureRequest, renders: dict[tuple[str, str], Rendered]) -> Rendered:
    return renders[request.param]


def _pod(r: Rendered) -> dict[str, Any]:
    return r.one("Deployment")["spec"]["template"]["spec"]


def test_gpu_requests_tolerations_and_node_selection(server: Rendered, renders: Any) -> None:
    pod = _pod(server)
    res = pod["containers"][0]["resources"]
    if server.app in GPU_MODELS:
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] >= 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        pools = {p["metadata"]["name"]: p for p in renders[(server.env, "platform")].of_kind("NodePool")}
        pool = pools[pod["nodeSelector"]["karpenter.sh/nodepool"]]
        taints = pool["spec"]["template"]["spec"]["taints"]
        assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in taints)
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert terms[0]["matchExpressions"][0]["key"] == "karpenter.k8s.aws/instance-gpu-name"
    else:
        assert "nvidia.com/gpu" not in res["requests"]
        assert pod["nodeSelector"]["karpenter.sh/nodepool"] == "cpu"


def test_weights_come_from_the_s3_mirror_through_the_cache(server: Rendered) -> None:
    pod = _pod(server)
    init = {c["name"]: c for c in pod["initContainers"]}["weights"]
    assert init["command"] == ["/bin/bash", "/scripts/fill-cache.sh"]
    init_env = {e["name"]: e["value"] for e in init["env"]}
    assert init_env["AWS_REGION"], "pods have no instance metadata to find the region (IMDS hop limit 1)"
    uris = init["args"][1::2]
    assert uris and all(u.startswith(f"s3://ensemble-{server.env}-model-weights-") for u in uris)
    server_c = pod["containers"][0]
    mounts = {m["name"]: m for m in server_c["volumeMounts"]}
    assert mounts["model-cache"]["readOnly"] is True
    env = {e["name"]: e.get("value") for e in server_c["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    volumes = {v["name"]: v for v in pod["volumes"]}
    if server.app in GPU_MODELS:
        assert volumes["model-cache"]["hostPath"]["path"].startswith("/mnt/k8s-disks/0/")
    rendered_text = repr(server.objects)
    assert "huggingface.co" not in rendered_text
    script = server.one("ConfigMap")["data"]["fill-cache.sh"]
    assert script == (DEPLOY / "charts/model-server/files/fill-cache.sh").read_text()


def test_startup_probes_allow_for_loading(server: Rendered) -> None:
    c = _pod(server)["containers"][0]
    startup = c["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= (300 if server.app in GPU_MODELS else 60), f"{server.app}: {budget}s"
    assert c["readinessProbe"]["httpGet"]["path"] in ("/health", "/ping")


def test_images_are_pinned(server: Rendered) -> None:
    pod = _pod(server)
    for c in [*pod["containers"], *pod["initContainers"]]:
        image = c["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag not in ("latest", "main", "nightly"), image
        assert "/" in repo


def test_keda_triggers_per_server_kind(server: Rendered) -> None:
    so = server.one("ScaledObject")
    dep = server.one("Deployment")
    assert so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    triggers = {t["type"]: t for t in so["spec"]["triggers"]}
    kind = server.app.split("-")[0]
    if kind in ("tabbyapi", "torchserve"):
        hso = server.one("HTTPScaledObject")
        assert hso["spec"]["scalingMetric"]["concurrency"]["targetValue"] >= 1
        assert hso["metadata"]["annotations"]["httpscaledobject.keda.sh/skip-scaledobject-creation"] == "true"
        assert triggers["external-push"]["metadata"]["httpScaledObject"] == hso["metadata"]["name"]
    if kind == "sglang":
        assert "sglang:num_queue_reqs" in triggers["prometheus"]["metadata"]["query"]
        assert server.one("ServiceMonitor")
        assert "--enable-metrics" in _pod(server)["containers"][0]["command"]
    if kind == "tei":
        assert triggers["cpu"]["metricType"] == "Utilization"
    element = next(el for el in elements(server.env) if el["name"] == server.app)
    scale_to_zero = layered_values(element)["autoscaling"].get("scaleToZero", False)
    assert (so["spec"]["minReplicaCount"] == 0) == scale_to_zero
    if scale_to_zero:
        assert "external-push" in triggers, "scale from zero needs the interceptor to hold requests"
    if server.env in ("staging", "prod"):
        cron = triggers["cron"]["metadata"]
        assert cron["start"] and cron["end"] and int(cron["desiredReplicas"]) >= 1


@pytest.mark.parametrize("env", ENVS)
def test_app_urls_reach_the_rendered_servers(env: str, renders: dict[tuple[str, str], Rendered]) -> None:
    """Each model URL in the app's settings names a Service some model chart renders, on its port;
    servers behind the KEDA interceptor are reached through their `-keda` name."""
    settings = renders[(env, "ensemble")].one("ConfigMap", "ensemble-settings")["data"]
    services: dict[str, tuple[dict[str, Any], Rendered]] = {}
    for m in MODELS:
        r = renders[(env, m)]
        for svc in r.of_kind("Service"):
            services[f"{svc['metadata']['name']}.{r.namespace}.svc.cluster.local"] = (svc, r)
    checked = 0
    for key, value in settings.items():
        if not key.endswith("__BASE_URL") or "ensemble-models" not in value:
            continue
        url = urlparse(value)
        assert url.hostname in services, f"{env} {key}: no Service {url.hostname}"
        svc, r = services[url.hostname]
        assert url.port in [p["port"] for p in svc["spec"]["ports"]], f"{env} {key}: port {url.port}"
        if r.of_kind("HTTPScaledObject"):
            assert svc["spec"].get("type") == "ExternalName", f"{env} {key} bypasses the KEDA interceptor"
            assert url.hostname in r.one("HTTPScaledObject")["spec"]["hosts"]
        checked += 1
    assert checked == 5


def test_scale_to_zero_per_environment_and_server(renders: dict[tuple[str, str], Rendered]) -> None:
    def zero(env: str) -> set[str]:
        return {m for m in MODELS if renders[(env, m)].one("ScaledObject")["spec"]["minReplicaCount"] == 0}

    assert zero("prod") == set()
    assert zero("staging") == set(MODELS)
    assert zero("dev") == set(GPU_MODELS), "dev keeps the CPU embeddings server warm (per-server override)"
