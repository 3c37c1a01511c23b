"""Write deploy/argocd/root/applicationset-<env>.yaml from the tables below (one place to edit).

    python deploy/argocd/generate.py           # rewrite the three files
    python deploy/argocd/generate.py --check   # exit 1 if a file differs from what this script writes

The ApplicationSet of an environment lists every component with its sync wave, namespace and source:
an upstream Helm chart pinned to a version, or a path in this repository. Values are layered from this
repository through the multi-source `$values` ref.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_URL = "https://github.com/ensemble/ensemble.git"
ROOT = Path(__file__).resolve().parent / "root"

ENVIRONMENTS = {
    "dev": {"server": "https://kubernetes.default.svc", "revision": "main"},
    "staging": {"server": "https://ensemble-staging.eks.eu-west-1.amazonaws.com", "revision": "main"},
    "prod": {"server": "https://ensemble-prod.eks.eu-west-1.amazonaws.com", "revision": "release"},
}

# Wave 0: operators and their CRDs (name, namespace, Helm repository, chart, pinned version).
OPERATORS = [
    (
        "aws-load-balancer-controller",
        "kube-system",
        "https://aws.github.io/eks-charts",
        "aws-load-balancer-controller",
        "1.17.1",
    ),
    ("karpenter", "kube-system", "public.ecr.aws/karpenter", "karpenter", "1.14.0"),
    (
        "external-secrets",
        "external-secrets",
        "https://charts.external-secrets.io",
        "external-secrets",
        "2.0.0",
    ),
    ("keda", "keda", "https://kedacore.github.io/charts", "keda", "2.17.2"),
    ("keda-add-ons-http", "keda", "https://kedacore.github.io/charts", "keda-add-ons-http", "0.14.0"),
    (
        "kube-prometheus-stack",
        "monitoring",
        "https://prometheus-community.github.io/helm-charts",
        "kube-prometheus-stack",
        "80.7.0",
    ),
    (
        "nvidia-device-plugin",
        "nvidia-device-plugin",
        "https://nvidia.github.io/k8s-device-plugin",
        "nvidia-device-plugin",
        "0.19.0",
    ),
    (
        "dcgm-exporter",
        "dcgm-exporter",
        "https://nvidia.github.io/dcgm-exporter/helm-charts",
        "dcgm-exporter",
        "4.8.2",
    ),
    ("argo-workflows", "argo", "https://argoproj.github.io/argo-helm", "argo-workflows", "1.0.18"),
]
# Every version above is the one deploy/upstream-charts.yaml records with its source commit (a test checks).
# 0 operators and CRDs -> 1 cluster config (node pools, secret store, workflow templates) -> 2 PostgreSQL
# and Milvus -> 3 model servers -> 4 the app.
WAVES = ("0", "1", "2", "3", "4")
MODEL_SERVERS = ["tabbyapi-mixtral", "tabbyapi-codellama", "sglang-llava", "tei-bge-small", "torchserve-sdxl"]

TEMPLATE_PATCH = """\
spec:
  sources:
    - repoURL: {{ .repoURL }}
      targetRevision: {{ .targetRevision }}
    {{- if .chart }}
      chart: {{ .chart }}
    {{- else }}
      path: {{ .path }}
    {{- end }}
    {{- if .valueFiles }}
      helm:
        releaseName: {{ .name }}
        ignoreMissingValueFiles: true
        valueFiles:
        {{- range .valueFiles }}
          - {{ . }}
        {{- end }}
    {{- end }}
    - repoURL: %(repo)s
      targetRevision: %(revision)s
      ref: values
{{- if eq .namespace "ensemble-models" }}
  syncPolicy:
    managedNamespaceMetadata:
      labels:
        # hostPath (the node NVMe model cache) is outside the baseline Pod Security level.
        pod-security.kubernetes.io/enforce: privileged
        pod-security.kubernetes.io/warn: baseline
{{- end }}
"""


def elements(env: str) -> list[dict[str, Any]]:
    """The generator's list: every Application of `env`, all with the same keys (missingkey=error)."""
    out: list[dict[str, Any]] = []
    for name, namespace, repo, chart, version in OPERATORS:
        out.append(
            {
                "name": name,
                "wave": "0",
                "namespace": namespace,
                "repoURL": repo,
                "chart": chart,
                "path": "",
                "targetRevision": version,
                "valueFiles": [
                    f"$values/deploy/values/operators/{name}.yaml",
                    f"$values/deploy/values/{env}/{name}.yaml",
                ],
            }
        )
    git = {"repoURL": REPO_URL, "targetRevision": ENVIRONMENTS[env]["revision"], "chart": ""}

    def ours(name: str, wave: str, namespace: str, path: str, value_files: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "wave": wave,
            "namespace": namespace,
            **git,
            "path": path,
            "valueFiles": value_files,
        }

    out.append(
        ours(
            "platform",
            "1",
            "kube-system",
            "deploy/charts/platform",
            [f"$values/deploy/values/{env}/platform.yaml"],
        )
    )
    out.append(ours("weight-cache-workflows", "1", "argo", "deploy/argo-workflows", []))
    out.append(
        ours(
            "ensemble-data",
            "2",
            "ensemble-data",
            "deploy/charts/ensemble-data",
            [f"$values/deploy/values/{env}/ensemble-data.yaml"],
        )
    )
    for server in MODEL_SERVERS:
        out.append(
            ours(
                server,
                "3",
                "ensemble-models",
                "deploy/charts/model-server",
                [
                    f"$values/deploy/values/models/{server}.yaml",
                    f"$values/deploy/values/{env}/model-servers.yaml",
                    f"$values/deploy/values/{env}/models/{server}.yaml",
                ],
            )
        )
    out.append(
        ours(
            "ensemble",
            "4",
            "ensemble",
            "deploy/charts/ensemble",
            [f"$values/deploy/values/{env}/ensemble.yaml"],
        )
    )
    return out


def applicationset(env: str) -> dict[str, Any]:
    target = ENVIRONMENTS[env]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": f"ensemble-{env}", "namespace": "argocd"},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            # Removing this ApplicationSet (or an element) must never cascade into deleting databases and
            # volumes: its Applications go, what they deployed stays until removed on purpose.
            "syncPolicy": {"preserveResourcesOnDeletion": True},
            "generators": [{"list": {"elements": elements(env)}}],
            # RollingSync: a wave starts only when every Application of the previous wave is Healthy.
            "strategy": {
                "type": "RollingSync",
                "rollingSync": {
                    "steps": [
                        {
                            "matchExpressions": [
                                {"key": "ensemble.io/wave", "operator": "In", "values": [wave]}
                            ]
                        }
                        for wave in WAVES
                    ]
                },
            },
            "template": {
                "metadata": {
                    "name": f"{env}-{{{{.name}}}}",
                    "labels": {"ensemble.io/env": env, "ensemble.io/wave": "{{.wave}}"},
                    "annotations": {"argocd.argoproj.io/sync-wave": "{{.wave}}"},
                    "finalizers": ["resources-finalizer.argocd.argoproj.io"],
                },
                "spec": {
                    "project": "default",
                    "destination": {"server": target["server"], "namespace": "{{.namespace}}"},
                    "sources": [],  # set by templatePatch: a Helm repository chart or a path in this repo
                    # No `automated`: RollingSync turns every generated Application's auto-sync off (Argo CD's
                    # Progressive Syncs docs) and starts each wave's syncs itself, with the retry below.
                    "syncPolicy": {
                        "syncOptions": [
                            "CreateNamespace=true",
                            "ServerSideApply=true",
                            "ApplyOutOfSyncOnly=true",
                        ],
                        "retry": {
                            "limit": 10,
                            "backoff": {"duration": "30s", "factor": 2, "maxDuration": "10m"},
                        },
                    },
                },
            },
            "templatePatch": TEMPLATE_PATCH % {"repo": REPO_URL, "revision": target["revision"]},
        },
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def render(env: str) -> str:
    header = (
        f"# Everything Ensemble runs in {env}: one Argo CD Application per list element, by waves.\n"
        "# Written by deploy/argocd/generate.py: edit the tables there and re-run it (a test checks).\n"
    )
    return header + yaml.dump(applicationset(env), Dumper=_Dumper, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for env in ENVIRONMENTS:
        path = ROOT / f"applicationset-{env}.yaml"
        text = render(env)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python deploy/argocd/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
