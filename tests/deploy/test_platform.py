"""Cluster configuration: GPU nodes with RAID0 instance-store NVMe for the weight cache, consolidation
that never moves a loaded model, and one secret store that every ExternalSecret uses."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import ENVS, Rendered


@pytest.fixture(params=ENVS)
def platform(request: pytest.FixtureRequest, renders: dict[tuple[str, str], Rendered]) -> Rendered:
    return renders[(request.param, "platform")]


def test_gpu_nodes_stripe_their_nvme_for_the_cache(platform: Rendered) -> None:
    pool = platform.one("NodePool", "gpu")
    ref = pool["spec"]["template"]["spec"]["nodeClassRef"]
    node_class = platform.one("EC2NodeClass", ref["name"])
    assert ref["kind"] == "EC2NodeClass" and ref["group"] == "karpenter.k8s.aws"
    assert node_class["spec"]["instanceStorePolicy"] == "RAID0"
    assert node_class["spec"]["amiSelectorTerms"][0]["alias"].startswith("al2023@")
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"
    requirements = {r["key"]: r for r in pool["spec"]["template"]["spec"]["requirements"]}
    nvme = requirements["karpenter.k8s.aws/instance-local-nvme"]
    assert nvme["operator"] == "Gt" and int(nvme["values"][0]) >= 100
    assert set(requirements["karpenter.k8s.aws/instance-family"]["values"]) <= {
        "g5",
        "g6",
        "g6e",
        "p4d",
        "p5",
    }


def test_gpu_consolidation_never_moves_a_loaded_model(platform: Rendered) -> None:
    pool = platform.one("NodePool", "gpu")
    disruption = pool["spec"]["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmpty"
    assert disruption["budgets"] == [{"nodes": "1"}]
    assert pool["spec"]["limits"]["nvidia.com/gpu"]
    taints = pool["spec"]["template"]["spec"]["taints"]
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints
    if platform.env == "prod":
        capacity = next(
            r
            for r in pool["spec"]["template"]["spec"]["requirements"]
            if r["key"] == "karpenter.sh/capacity-type"
        )
        assert capacity["values"] == ["on-demand"], "no spot interruptions under loaded models in prod"


def test_every_external_secret_uses_the_platform_store(renders: dict[tuple[str, str], Rendered]) -> None:
    for env in ENVS:
        store = renders[(env, "platform")].one("ClusterSecretStore")
        assert store["spec"]["provider"]["aws"]["service"] == "SecretsManager"
        found = 0
        for (e, app), r in renders.items():
            if e != env:
                continue
            for es in r.of_kind("ExternalSecret"):
                ref = es["spec"]["secretStoreRef"]
                assert (ref["kind"], ref["name"]) == ("ClusterSecretStore", store["metadata"]["name"]), app
                found += 1
        assert found >= 4, env
