"""values.schema.json is enforced: values that break it fail to render (negative tests), and every
chart lints clean with each environment's values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ENVS, REPO, deep_merge, elements, helm, layered_values, render_chart

BAD_VALUES = {
    "app-single-replica": ("ensemble", {"replicaCount": 1}),
    "app-hpa-min-one": ("ensemble", {"autoscaling": {"minReplicas": 1}}),
    "app-no-stickiness": ("ensemble", {"ingress": {"stickiness": {"enabled": False}}}),
    "app-secret-in-configmap": ("ensemble", {"settings": {"ENSEMBLE_SUPERVISOR__API_KEY": "sk-123"}}),
    "app-local-llm-in-cluster": ("ensemble", {"settings": {"ENSEMBLE_LOCAL_LLM__ENABLED": "auto"}}),
    "app-no-secret-source": (
        "ensemble",
        {"secrets": {"existingSecret": "", "externalSecret": {"enabled": False}}},
    ),
    "app-latest-tag": ("ensemble", {"image": {"tag": "latest"}}),
    "app-auth-secret-optional": (
        "ensemble",
        {"secrets": {"keys": {"CHAINLIT_AUTH_SECRET": {"key": "chainlit-auth-secret", "optional": True}}}},
    ),
    "app-open-to-anyone": ("ensemble", {"settings": {"ENSEMBLE_AUTH__MODE": "none"}}),
    "app-first-visitor-claims-account": (
        "ensemble",
        {"settings": {"ENSEMBLE_AUTH__FIRST_LOGIN_CREATES_ACCOUNT": "true"}},
    ),
    "app-mcp-header-secret-in-values": (
        "ensemble",
        {"mcp": {"servers": {"tickets": {"url": "http://t/mcp", "headers": {"Authorization": "Bearer x"}}}}},
    ),
    "app-mcp-stdio-without-command": ("ensemble", {"mcp": {"servers": {"tickets": {"transport": "stdio"}}}}),
    "app-mcp-bad-server-name": ("ensemble", {"mcp": {"servers": {"Tickets Desk": {"url": "http://t/mcp"}}}}),
    "model-latest-tag": ("tabbyapi-mixtral", {"image": {"tag": "latest"}}),
    "model-gpu-server-without-gpu": ("sglang-llava", {"gpu": {"enabled": False}}),
    "model-weights-from-hub": (
        "tabbyapi-codellama",
        {
            "weights": {
                "models": [
                    {"name": "x", "s3Prefix": "https://huggingface.co/codellama/CodeLlama-34b-Instruct-hf"}
                ]
            }
        },
    ),
    "model-sglang-without-metrics": ("sglang-llava", {"metrics": {"enabled": False}}),
    "model-unknown-kind": ("tei-bge-small", {"kind": "vllm"}),
    "platform-role-arn-not-name": ("platform", {"nodeRole": "arn:aws:iam::111122223333:role/x"}),
    "platform-gpu-family-not-allowed": ("platform", {"gpu": {"instanceFamilies": ["g4ad"]}}),
    "data-external-without-host": (
        "ensemble-data",
        {"postgresql": {"mode": "external", "external": {"host": ""}}},
    ),
}


def _element(env: str, name: str) -> dict[str, Any]:
    return next(el for el in elements(env) if el["name"] == name)


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_values_violating_the_schema_fail_to_render(case: str, tmp_path: Path) -> None:
    app, override = BAD_VALUES[case]
    el = _element("prod", app)
    good = layered_values(el)
    render_chart(REPO / el["path"], good, app, el["namespace"])  # the environment's values are fine...
    bad_file = tmp_path / "bad-values.yaml"
    bad_file.write_text(yaml.safe_dump(override))
    bad = deep_merge(good, yaml.safe_load(bad_file.read_text()))
    with pytest.raises(helm.HelmValuesError):  # ...and one bad values file fails the render
        render_chart(REPO / el["path"], bad, app, el["namespace"])


@pytest.mark.parametrize("env", ENVS)
def test_charts_lint_clean(env: str) -> None:
    for el in elements(env):
        if not el["path"].startswith("deploy/charts/"):
            continue
        report = helm.lint(
            REPO / el["path"],
            layered_values(el),
            strict=True,
            namespace=el["namespace"],
            kube_version="v1.33.0",
        )
        errors = [e for e in report["errors"] if "missing these dependencies: milvus" not in e]
        assert not errors, f"{env}/{el['name']}: {errors}"


def test_milvus_subchart_is_the_only_thing_not_rendered_offline() -> None:
    deps = helm.dependency_list(DEPLOY / "charts" / "ensemble-data")
    assert [(d["name"], d["status"]) for d in deps] in ([("milvus", "missing")], [("milvus", "ok")])
