"""The upstream charts, where they come from, and stand-ins for what of them our checks read.

The charts themselves are not kept in this repository (the workplace keeps upstream sources out of it).
Two ways to render them:

- **the real charts**, unpacked under `~/.cache/ensemble/upstream-charts/<name>-<version>/`
  (`ENSEMBLE_UPSTREAM_CHARTS`), rendered by Helm with our values exactly as Argo CD renders them;
- **stand-ins** written here: for each upstream chart, the objects and defaults our invariants read
  (a DaemonSet's scheduling fields, a StatefulSet's volume claims, the defaults of a few values),
  derived from our values the way the chart's template does, each citing the upstream file and tag.
  When the real charts are present, `test_upstream_charts.py` checks that every stand-in agrees with
  the real chart on those fields, so the stand-ins cannot drift unnoticed.

Also here: facts about the model servers that no chart states (which files each one opens at start,
which config keys name another hub repository), written from the servers' loaders.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY

LOCK = DEPLOY / "upstream-charts.yaml"


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ensemble" / "upstream-charts"
    return Path(os.environ.get("ENSEMBLE_UPSTREAM_CHARTS", default))


def lock() -> dict[str, dict[str, Any]]:
    """deploy/upstream-charts.yaml by chart name: the pinned versions and their provenance."""
    return {c["name"]: c for c in yaml.safe_load(LOCK.read_text())["charts"]}


def chart_dir(name: str, version: str) -> Path:
    return cache_dir() / f"{name}-{version}"


def missing_charts() -> list[str]:
    """The pinned upstream charts that are not unpacked in the cache (`name-version`)."""
    pins = sorted((name, entry["version"]) for name, entry in lock().items())
    return [f"{n}-{v}" for n, v in pins if not (chart_dir(n, v) / "Chart.yaml").is_file()]


def coalesce(defaults: Any, values: Any) -> Any:
    """Helm's merge of user values over a chart's defaults: maps merge key by key, a null deletes the
    key, anything else (lists included) replaces the default."""
    if not isinstance(defaults, dict) or not isinstance(values, dict):
        return copy.deepcopy(values)
    out = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def get(values: dict[str, Any], path: str, default: Any = None) -> Any:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


# --- defaults of the upstream charts that our checks read (subsets of each chart's values.yaml) --------
DEFAULTS: dict[str, dict[str, Any]] = {
    # NVIDIA/k8s-device-plugin v0.19.0, deployments/helm/nvidia-device-plugin/values.yaml
    "nvidia-device-plugin": {
        "nodeSelector": {},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [
                            {"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In", "values": ["true"]}
                        ]},
                        {"matchExpressions": [
                            {"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In",
                             "values": ["NVIDIA"]}
                        ]},
                        {"matchExpressions": [
                            {"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}
                        ]},
                    ]
                }
            }
        },
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
        "priorityClassName": "system-node-critical",
        "gfd": {"enabled": False},
        "nfd": {"enabled": False},
    },
    # NVIDIA/dcgm-exporter 4.5.3-4.8.2, deployment/values.yaml
    "dcgm-exporter": {
        "nodeSelector": {},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {},
        "priorityClassName": "system-node-critical",
        "serviceMonitor": {"enabled": True, "interval": "15s"},
        "service": {"port": 9400},
    },
    # argoproj/argo-helm argo-workflows-1.0.18, charts/argo-workflows/values.yaml
    "argo-workflows": {
        "server": {
            "enabled": True,
            "authMode": "",
            "authModes": [],
            "sso": {
                "enabled": False,
                "issuer": "https://accounts.google.com",
                "clientId": {"name": "argo-server-sso", "key": "client-id"},
                "clientSecret": {"name": "argo-server-sso", "key": "client-secret"},
                "redirectUrl": "",
            },
        },
    },
    # aws/karpenter-provider-aws 692ccdd0 (chart 1.14.0), charts/karpenter/values.yaml
    "karpenter": {"settings": {"clusterName": "", "interruptionQueue": ""}},
    # aws/eks-charts 9639b8b (chart 1.17.1), stable/aws-load-balancer-controller/values.yaml
    "aws-load-balancer-controller": {"clusterName": "", "region": "", "vpcId": ""},
    # external-secrets helm-chart-2.0.0, deploy/charts/external-secrets/values.yaml
    "external-secrets": {"installCRDs": True, "serviceAccount": {"create": True, "annotations": {}}},
    # kedacore/charts v2.17.2 keda/values.yaml and 050b274 http-add-on/values.yaml: nothing our checks read
    "keda": {},
    "keda-add-ons-http": {},
    # prometheus-community kube-prometheus-stack-80.7.0, charts/kube-prometheus-stack/values.yaml
    "kube-prometheus-stack": {
        "prometheus": {"prometheusSpec": {"serviceMonitorSelectorNilUsesHelmValues": True}},
        "grafana": {
            "enabled": True,
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                                       "searchNamespace": "ALL"}},
        },
    },
    # zilliztech/milvus-helm milvus-4.2.56, charts/milvus/values.yaml (+ its bundled etcd 6.3.3, minio
    # 8.0.17 and pulsar 3.3.0 charts): the components that keep data and their volume claims
    "milvus": {
        "cluster": {"enabled": True},
        "standalone": {"persistence": {"enabled": True, "persistentVolumeClaim": {"storageClass": None}}},
        "etcd": {"enabled": True, "replicaCount": 3, "persistence": {"enabled": True, "storageClass": None}},
        "minio": {"enabled": True, "mode": "distributed", "persistence": {"enabled": True, "storageClass": None}},
        "pulsarv3": {
            "enabled": True,
            "persistence": True,
            "volumes": {"persistence": True},
            "components": {"zookeeper": True, "bookkeeper": True},
            "bookkeeper": {"volumes": {"persistence": True, "journal": {"name": "journal"},
                                       "ledgers": {"name": "ledgers"}}},
            "zookeeper": {"volumes": {"persistence": True, "data": {"name": "data"}}},
        },
    },
}


def effective(chart: str, values: dict[str, Any]) -> dict[str, Any]:
    """A stand-in's view of the release's values: the upstream defaults above, our values over them."""
    out: dict[str, Any] = coalesce(DEFAULTS[chart], values)
    return out


def _daemonset(name: str, namespace: str, container: str, image: str, v: dict[str, Any]) -> dict[str, Any]:
    """The scheduling part of a DaemonSet as the charts' templates write it: `with .Values.nodeSelector`,
    `with .Values.affinity`, `with .Values.tolerations` (empty maps and lists are left out)."""
    pod: dict[str, Any] = {"containers": [{"name": container, "image": image}]}
    for key in ("nodeSelector", "affinity", "tolerations", "priorityClassName"):
        if v.get(key):
            pod[key] = copy.deepcopy(v[key])
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def _device_plugin(release: str, namespace: str, v: dict[str, Any]) -> list[dict[str, Any]]:
    # templates/daemonset-device-plugin.yml (v0.19.0): nodeSelector, affinity and tolerations from values
    return [_daemonset(release, namespace, "nvidia-device-plugin-ctr", "nvcr.io/nvidia/k8s-device-plugin:v0.19.0", v)]


def _dcgm_exporter(release: str, namespace: str, v: dict[str, Any]) -> list[dict[str, Any]]:
    # deployment/templates/daemonset.yaml and service-monitor.yaml (4.5.3-4.8.2)
    objects = [_daemonset(release, namespace, "exporter", "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless", v)]
    if get(v, "serviceMonitor.enabled"):
        objects.append({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": release, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": release}},
                     "endpoints": [{"port": "metrics", "path": "/metrics"}]},
        })
    return objects


def _claim(name: str, storage_class: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if storage_class not in (None, ""):
        spec["storageClassName"] = "" if storage_class == "-" else storage_class
    return {"metadata": {"name": name}, "spec": spec}


def _statefulset(name: str, namespace: str, claims: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": "x"}]}},
                 "volumeClaimTemplates": claims},
    }


def milvus_objects(release: str, namespace: str, v: dict[str, Any]) -> list[dict[str, Any]]:
    """The Milvus chart's data volumes (templates/pvc.yaml; etcd's, MinIO's and Pulsar's StatefulSets and
    PVC), with the storage class each template writes (none when the value is unset)."""
    name = v.get("fullnameOverride") or f"{release}-milvus"
    out: list[dict[str, Any]] = []
    if not get(v, "cluster.enabled") and get(v, "standalone.persistence.enabled"):
        claim = _claim(name, get(v, "standalone.persistence.persistentVolumeClaim.storageClass"))
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": namespace}, "spec": claim["spec"]})
    if get(v, "etcd.enabled") and get(v, "etcd.persistence.enabled"):
        storage = get(v, "global.storageClass") or get(v, "etcd.persistence.storageClass")
        out.append(_statefulset(f"{release}-etcd", namespace, [_claim("data", storage)]))
    if get(v, "minio.enabled") and get(v, "minio.persistence.enabled"):
        storage = get(v, "minio.persistence.storageClass")
        if get(v, "minio.mode") == "standalone":
            claim = _claim(f"{release}-minio", storage)
            out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": f"{release}-minio", "namespace": namespace}, "spec": claim["spec"]})
        else:
            out.append(_statefulset(f"{release}-minio", namespace, [_claim("export", storage)]))
    p = v.get("pulsarv3") or {}
    if p.get("enabled") and p.get("persistence") and get(p, "volumes.persistence"):
        prefix = f"{release}-pulsarv3"
        if get(p, "components.bookkeeper") and get(p, "bookkeeper.volumes.persistence"):
            claims = [
                _claim(f"{prefix}-bookie-{get(p, f'bookkeeper.volumes.{vol}.name')}",
                       get(p, f"bookkeeper.volumes.{vol}.storageClassName"))
                for vol in ("journal", "ledgers")
            ]
            out.append(_statefulset(f"{prefix}-bookie", namespace, claims))
        if get(p, "components.zookeeper") and get(p, "zookeeper.volumes.persistence"):
            claim = _claim(f"{prefix}-zookeeper-{get(p, 'zookeeper.volumes.data.name')}",
                           get(p, "zookeeper.volumes.data.storageClassName"))
            out.append(_statefulset(f"{prefix}-zookeeper", namespace, [claim]))
    return out


def _nothing(release: str, namespace: str, v: dict[str, Any]) -> list[dict[str, Any]]:
    return []


STAND_INS: dict[str, Callable[[str, str, dict[str, Any]], list[dict[str, Any]]]] = {
    "nvidia-device-plugin": _device_plugin,
    "dcgm-exporter": _dcgm_exporter,
    # operators whose objects no invariant reads beyond their values (checked on the real charts when present)
    "argo-workflows": _nothing,
    "karpenter": _nothing,
    "aws-load-balancer-controller": _nothing,
    "external-secrets": _nothing,
    "keda": _nothing,
    "keda-add-ons-http": _nothing,
    "kube-prometheus-stack": _nothing,
}

# --- facts about the model servers ---------------------------------------------------------------------
# What each server opens from a weight-cache entry when it starts, with HF_HUB_OFFLINE=1 (file names as the
# mirror lists them; a tuple: any one of them). Written from the loaders: SGLang 0.4.6 (model config and
# weights from --model-path; tokenizer AND image processor, AutoProcessor.from_pretrained, from
# --tokenizer-path), TEI 1.9 (--model-id: config, tokenizer, weights, the sentence-transformers pooling
# config), TabbyAPI/exllamav2 (config, EXL2 shards, tokenizer), and deploy/torchserve/handler.py
# (diffusers' fp16 SDXL pipeline).
LOADS: dict[str, dict[str, list[str | tuple[str, ...]]]] = {
    "sglang": {
        "--model-path": ["config.json", ("model-00001-of-00003.safetensors", "pytorch_model-00001-of-00003.bin")],
        "--tokenizer-path": [
            "config.json",
            "tokenizer_config.json",
            ("tokenizer.model", "tokenizer.json"),
            "special_tokens_map.json",
            "preprocessor_config.json",
        ],
    },
    "tei": {
        "--model-id": ["config.json", "tokenizer.json", ("model.safetensors", "pytorch_model.bin"),
                       "1_Pooling/config.json"],
    },
    "tabbyapi": {
        "model_name": ["config.json", "output.safetensors", ("tokenizer.model", "tokenizer.json")],
    },
    "torchserve": {
        "model_path": [
            "model_index.json", "scheduler/scheduler_config.json",
            "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
            "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
            "text_encoder/config.json", "text_encoder/model.fp16.safetensors",
            "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
            "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt",
        ],
    },
}
# Keys of a mirrored config.json that name another hub repository, which the server then loads itself
# (liuhaotian/llava-v1.6-vicuna-7b's config.json; SGLang's llava.py: CLIPVisionModel.from_pretrained(
# config.mm_vision_tower)), and what that load opens.
HUB_REFERENCES: dict[str, dict[str, str]] = {
    "liuhaotian/llava-v1.6-vicuna-7b": {"mm_vision_tower": "openai/clip-vit-large-patch14-336"},
}
REFERENCE_LOADS: dict[str, list[str | tuple[str, ...]]] = {
    "mm_vision_tower": ["config.json", ("model.safetensors", "pytorch_model.bin")],
}
# Metrics the dashboard may plot besides the app's own: DCGM exporter's default counters that we use
# (deployment/templates/metrics-configmap.yaml, 4.5.3-4.8.2) and SGLang's queue gauge (--enable-metrics).
EXTERNAL_METRICS = {
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP", "sglang:num_queue_reqs",
}
