"""Invariants across every object one environment's stack renders, that a first sync on an empty EKS
cluster depends on. Each check returns the problems it finds, as sentences; an empty list is a pass.

They read only rendered objects and effective values (tests/deploy/stack.py), so they run the same on
our charts with the upstream charts' stand-ins and on the real upstream charts.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.deploy import upstream
from tests.deploy.conftest import DEPLOY, REPO, elements
from tests.deploy.stack import AppRender, Stack

GPU = "nvidia.com/gpu"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
# Labels every node Karpenter launches carries (karpenter.sh/karpenter.k8s.aws well-known labels); their
# values are those the NodePool allows, or any when it does not constrain them.
WELL_KNOWN = {
    "karpenter.sh/nodepool", "karpenter.sh/capacity-type", "kubernetes.io/arch", "kubernetes.io/os",
    "kubernetes.io/hostname", "node.kubernetes.io/instance-type", "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region", "karpenter.k8s.aws/instance-family", "karpenter.k8s.aws/instance-size",
    "karpenter.k8s.aws/instance-category", "karpenter.k8s.aws/instance-generation",
    "karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-manufacturer", "karpenter.k8s.aws/instance-local-nvme",
    "karpenter.k8s.aws/instance-cpu", "karpenter.k8s.aws/instance-memory",
}
# The GPU of each instance family we allow (AWS EC2 accelerated computing instance types).
FAMILY_GPU = {"g5": "a10g", "g6": "l4", "g6e": "l40s", "p4d": "a100", "p5": "h100"}
CLUSTER_SCOPED = {
    "Namespace", "StorageClass", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
    "IngressClass", "PersistentVolume", "NodePool", "EC2NodeClass", "ClusterSecretStore", "ClusterWorkflowTemplate",
    "ClusterExternalSecret", "ClusterTriggerAuthentication", "CSIDriver", "RuntimeClass", "NodeOverlay",
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")
ANY = None  # a label whose value Karpenter lets vary freely


# --- nodes and pods --------------------------------------------------------------------------------------
@dataclass
class NodePoolModel:
    """What a NodePool's nodes look like to the scheduler: labels (value sets) and taints."""

    name: str
    labels: dict[str, set[str] | None]  # None: any value
    taints: list[dict[str, Any]]
    termination_grace_period: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def of(cls, pool: dict[str, Any]) -> NodePoolModel:
        spec = pool["spec"]["template"]["spec"]
        labels: dict[str, set[str] | None] = {k: ANY for k in WELL_KNOWN}
        labels["karpenter.sh/nodepool"] = {pool["metadata"]["name"]}
        for req in spec.get("requirements", []):
            if req["operator"] == "In":
                labels[req["key"]] = set(req["values"])
            elif req["operator"] == "Exists":
                labels.setdefault(req["key"], ANY)
        families = labels.get("karpenter.k8s.aws/instance-family")
        if families is not None and labels.get("karpenter.k8s.aws/instance-gpu-name") is ANY:
            labels["karpenter.k8s.aws/instance-gpu-name"] = {FAMILY_GPU[f] for f in families if f in FAMILY_GPU}
        for key, value in ((pool["spec"]["template"].get("metadata") or {}).get("labels") or {}).items():
            labels[key] = {str(value)}
        return cls(pool["metadata"]["name"], labels, spec.get("taints", []), spec.get("terminationGracePeriod"), pool)


def _expression_fits(expr: dict[str, Any], labels: dict[str, set[str] | None]) -> bool:
    key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
    present = key in labels
    possible = labels.get(key)
    if op == "In":
        return present and (possible is ANY or bool(possible & values))
    if op == "NotIn":
        return not present or possible is ANY or bool(possible - values)
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        return present
    raise ValueError(f"unknown operator {op}")


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


def pod_fits(pod: dict[str, Any], pool: NodePoolModel) -> list[str]:
    """Why a pod (a pod template's spec) cannot run on the pool's nodes; empty when it can."""
    why = []
    for key, value in (pod.get("nodeSelector") or {}).items():
        possible = pool.labels.get(key, set())
        if key not in pool.labels or (possible is not ANY and str(value) not in possible):
            why.append(f"nodeSelector {key}={value}")
    required = (((pod.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(all(_expression_fits(e, pool.labels) for e in t.get("matchExpressions", [])) for t in terms):
        keys = sorted({e["key"] for t in terms for e in t.get("matchExpressions", [])})
        why.append(f"required node affinity on {', '.join(keys)}")
    for taint in pool.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod.get("tolerations") or [], taint):
            why.append(f"taint {taint['key']}:{taint['effect']} not tolerated")
    return why


def pod_templates(stack: Stack) -> Iterator[tuple[AppRender, dict[str, Any], dict[str, Any]]]:
    """(application, workload, pod template) for every workload rendered."""
    for app, obj in stack.objects():
        if obj.get("kind") in WORKLOADS:
            yield app, obj, obj["spec"]["template"]
        elif obj.get("kind") == "Pod":
            yield app, obj, {"metadata": obj.get("metadata", {}), "spec": obj["spec"]}


def _requests_gpu(pod: dict[str, Any]) -> bool:
    for c in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        resources = c.get("resources") or {}
        for part in ("limits", "requests"):
            if int((resources.get(part) or {}).get(GPU, 0) or 0) > 0:
                return True
    return False


def nodepools(stack: Stack) -> list[NodePoolModel]:
    return [NodePoolModel.of(o) for _, o in stack.of_kind("NodePool")]


def _gpu_agents(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """The DaemonSets every GPU node needs: the device plugin (nvidia.com/gpu becomes allocatable) and the
    DCGM exporter (GPU metrics); the MPS control daemon and GPU feature discovery are not among them."""
    agents: dict[str, list[dict[str, Any]]] = {"the NVIDIA device plugin": [], "the DCGM exporter": []}
    for app, obj in stack.of_kind("DaemonSet"):
        names = {c["name"] for c in obj["spec"]["template"]["spec"]["containers"]}
        if app.chart == "nvidia-device-plugin" and "nvidia-device-plugin-ctr" in names:
            agents["the NVIDIA device plugin"].append(obj)
        elif app.chart == "dcgm-exporter":
            agents["the DCGM exporter"].append(obj)
    return agents


def gpu_placement_problems(stack: Stack) -> list[str]:
    """Every pod that requests nvidia.com/gpu fits a NodePool on whose nodes the GPU DaemonSets run too."""
    pools = nodepools(stack)
    agents = _gpu_agents(stack)
    problems = []
    for what, found in agents.items():
        if not found:
            problems.append(f"{what} is not deployed: no DaemonSet of it is rendered")
    for app, workload, template in pod_templates(stack):
        pod = template["spec"]
        if not _requests_gpu(pod):
            continue
        where = f"{app.name}: {workload['kind']}/{workload['metadata']['name']}"
        fitting = [p for p in pools if not pod_fits(pod, p)]
        if not fitting:
            reasons = "; ".join(f"{p.name}: {', '.join(pod_fits(pod, p))}" for p in pools) or "no NodePool rendered"
            problems.append(f"{where} requests {GPU} but fits no NodePool ({reasons})")
            continue
        for pool in fitting:
            for what, daemonsets in agents.items():
                for ds in daemonsets:
                    why = pod_fits(ds["spec"]["template"]["spec"], pool)
                    if why:
                        problems.append(
                            f"{where} can only run on NodePool {pool.name}, where {what} "
                            f"(DaemonSet {ds['metadata']['name']}) never runs: {', '.join(why)}"
                        )
    return problems


def disruption_problems(stack: Stack) -> list[str]:
    """A pod with karpenter.sh/do-not-disrupt blocks drift and expiry of its node unless its NodePool has a
    terminationGracePeriod (Karpenter's disruption docs): the documented node-by-node AMI roll never happens."""
    pools = nodepools(stack)
    problems = []
    for app, workload, template in pod_templates(stack):
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(DO_NOT_DISRUPT, "")).lower() != "true":
            continue
        for pool in pools:
            if not pod_fits(template["spec"], pool) and not pool.termination_grace_period:
                problems.append(
                    f"{app.name}: {workload['kind']}/{workload['metadata']['name']} carries {DO_NOT_DISRUPT} and "
                    f"runs on NodePool {pool.name}, which has no terminationGracePeriod: drift (a new AMI) never "
                    "replaces those nodes and expired ones stay half-drained"
                )
    return problems


# --- storage ---------------------------------------------------------------------------------------------
def _claims(stack: Stack) -> Iterator[tuple[str, dict[str, Any]]]:
    for app, obj in stack.objects():
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        if kind == "PersistentVolumeClaim":
            yield f"{app.name}: PersistentVolumeClaim/{name}", obj["spec"]
        elif kind in ("StatefulSet", "WorkflowTemplate", "Workflow", "CronWorkflow"):
            spec = obj["spec"].get("workflowSpec", obj["spec"]) if kind == "CronWorkflow" else obj["spec"]
            for claim in spec.get("volumeClaimTemplates") or []:
                yield f"{app.name}: {kind}/{name} claim {claim['metadata']['name']}", claim["spec"]


def storage_problems(stack: Stack) -> list[str]:
    """Every claim names a StorageClass the stack creates, or names none and exactly one default exists."""
    classes = {o["metadata"]["name"]: o for _, o in stack.of_kind("StorageClass")}
    defaults = sorted(n for n, o in classes.items()
                      if str((o["metadata"].get("annotations") or {}).get(DEFAULT_CLASS, "")).lower() == "true")
    problems = []
    if len(defaults) > 1:
        problems.append(f"{len(defaults)} default StorageClasses ({', '.join(defaults)}): at most one may be")
    for where, spec in _claims(stack):
        name = spec.get("storageClassName")
        if name is None and len(defaults) != 1:
            problems.append(
                f"{where} names no StorageClass and the stack declares no default one (EKS 1.30+ has none): "
                "it stays Pending"
            )
        elif name and name not in classes:
            problems.append(f"{where} names StorageClass {name}, which nothing in the stack creates")
    return problems


# --- ownership -------------------------------------------------------------------------------------------
def duplicate_problems(stack: Stack) -> list[str]:
    """No object (kind, namespace, name) is rendered by two Applications: they would fight over it."""
    owners: dict[tuple[str, str, str | None, str], list[str]] = {}
    for app, obj in stack.objects():
        kind = obj["kind"]
        group = obj.get("apiVersion", "").rpartition("/")[0]
        namespace = None if kind in CLUSTER_SCOPED else (obj["metadata"].get("namespace") or app.namespace)
        key = (group, kind, namespace, obj["metadata"]["name"])
        owners.setdefault(key, [])
        if app.name not in owners[key]:
            owners[key].append(app.name)
    return [
        f"{kind}/{name}{f' in {ns}' if ns else ''} is rendered by {len(apps)} Applications: {', '.join(apps)}"
        for (_, kind, ns, name), apps in sorted(owners.items(), key=str)
        if len(apps) > 1
    ]


# --- versions and configuration --------------------------------------------------------------------------
def pin_problems(
    env: str, lock: dict[str, dict[str, Any]] | None = None, apps: list[dict[str, Any]] | None = None
) -> list[str]:
    """Every pinned upstream chart (ApplicationSet elements, ensemble-data's dependency) is the version the
    provenance list records from the chart's source repository, from the same Helm repository."""
    lock = upstream.lock() if lock is None else lock
    pins = [(el["chart"], el["repoURL"], el["targetRevision"], f"Application {el['name']}")
            for el in (elements(env) if apps is None else apps) if el["chart"]]
    data_chart = yaml.safe_load((DEPLOY / "charts" / "ensemble-data" / "Chart.yaml").read_text())
    pins += [(d["name"], d["repository"], d["version"], "charts/ensemble-data dependency")
             for d in data_chart.get("dependencies", [])]
    problems = []
    for chart, repo, version, where in pins:
        entry = lock.get(chart)
        if entry is None:
            problems.append(f"{where}: chart {chart} is not in deploy/upstream-charts.yaml")
        elif str(entry["version"]) != str(version):
            problems.append(f"{where}: {chart} {version} is pinned, but the version found in {entry['source']} is "
                            f"{entry['version']} ({version} may not exist)")
        elif entry["repository"].rstrip("/") != repo.rstrip("/"):
            problems.append(f"{where}: {chart} from {repo}, but it is published at {entry['repository']}")
    unused = set(lock) - {p[0] for p in pins}
    problems += [f"deploy/upstream-charts.yaml lists {c}, which nothing deploys" for c in sorted(unused)]
    return problems


def _filled(values: dict[str, Any], *paths: str) -> list[str]:
    return [p for p in paths if not upstream.get(values, p)]


def operator_config_problems(stack: Stack) -> list[str]:
    """Each operator's configuration that it cannot start or work without."""
    problems = []
    for app in stack.apps.values():
        v = app.values
        if app.chart == "argo-workflows":
            modes = [*(upstream.get(v, "server.authModes") or []), upstream.get(v, "server.authMode") or ""]
            if "sso" in modes:
                missing = _filled(v, "server.sso.enabled", "server.sso.issuer", "server.sso.redirectUrl",
                                  "server.sso.clientId.name", "server.sso.clientSecret.name")
                if missing:
                    problems.append(f"{app.name}: server.authModes has `sso` but {', '.join(missing)} is not set: "
                                    "the Argo server fails at start and wave 0 never turns Healthy")
        elif app.chart == "karpenter":
            problems += [f"{app.name}: {p} is required" for p in _filled(v, "settings.clusterName")]
        elif app.chart == "aws-load-balancer-controller":
            # pods get no instance metadata (IMDS hop limit 1), so the controller cannot discover these
            problems += [f"{app.name}: {p} is required" for p in _filled(v, "clusterName", "region", "vpcId")]
        elif (
            app.chart == "kube-prometheus-stack"
            and upstream.get(v, "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues") is not False
        ):
            problems.append(f"{app.name}: Prometheus selects only its own release's ServiceMonitors "
                            "(serviceMonitorSelectorNilUsesHelmValues): the app's, the model servers' and "
                            "DCGM's are never scraped")
    return problems


def sync_policy_problems(appset: dict[str, Any]) -> list[str]:
    """With RollingSync the ApplicationSet controller turns auto-sync off (Argo CD's Progressive Syncs docs):
    an `automated` policy (selfHeal, prune) in the template is dead configuration that promises what never runs."""
    spec = appset["spec"]
    if (spec.get("strategy") or {}).get("type") != "RollingSync":
        return []
    policy = spec["template"]["spec"].get("syncPolicy") or {}
    if "automated" in policy:
        return [f"ApplicationSet {appset['metadata']['name']}: RollingSync disables auto-sync, so "
                f"syncPolicy.automated {policy['automated']} never applies"]
    return []


# --- weights available offline --------------------------------------------------------------------------
def _mirrored(entry: dict[str, Any], file: str | tuple[str, ...]) -> bool:
    """Whether mirror-weights (snapshot_download with allow_patterns) copies `file` (any one of a tuple)."""
    patterns = [p.strip() for p in str(entry.get("allowPatterns") or "").split(",") if p.strip()]
    names = file if isinstance(file, tuple) else (file,)
    return not patterns or any(fnmatch.fnmatch(n, p) for n in names for p in patterns)


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def _entry_at(path: str, mount: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    prefix = mount.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    return entries.get(path[len(prefix):].split("/")[0])


def _loaded_paths(kind: str, server: dict[str, Any], app: AppRender) -> dict[str, str]:
    """role -> the path the server loads it from, read off its rendered command line or config."""
    args = [str(a) for a in server.get("command", []) + server.get("args", [])]
    if kind == "sglang":
        return {flag: p for flag in ("--model-path", "--tokenizer-path") if (p := _arg(args, flag))}
    if kind == "tei":
        return {"--model-id": p} if (p := _arg(args, "--model-id")) else {}
    if kind == "tabbyapi":
        config = next(o for o in app.objects if o["kind"] == "ConfigMap")["data"]["config.yml"]
        model = yaml.safe_load(config)["model"]
        return {"model_name": f"{model['model_dir']}/{model['model_name']}"}
    if kind == "torchserve":
        handler = yaml.safe_load((REPO / "deploy" / "torchserve" / "model-config.yaml").read_text())["handler"]
        return {"model_path": handler["model_path"]}
    return {}


def offline_file_problems(stack: Stack) -> list[str]:
    """With HF_HUB_OFFLINE=1, every file a model server opens at start is in the weight mirror's list: its
    model and tokenizer directories are mirrored cache entries whose allow-patterns keep those files, and a
    config key naming another hub repository (LLaVA's vision tower) is pointed at a mirrored entry."""
    problems = []
    for app in stack.apps.values():
        if app.chart != "model-server":
            continue
        kind = app.values["kind"]
        deployment = next(o for o in app.objects if o["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        server = pod["containers"][0]
        if {"name": "HF_HUB_OFFLINE", "value": "1"} not in server.get("env", []):
            continue
        mount = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "model-cache")
        entries = {m["name"]: m for m in app.values["weights"]["models"]}
        filled = set(pod["initContainers"][0]["args"][::2])
        for role, path in _loaded_paths(kind, server, app).items():
            entry = _entry_at(path, mount, entries)
            if entry is None or entry["name"] not in filled:
                problems.append(f"{app.name}: {role} {path} is not a weight-cache entry the init container fills")
                continue
            for file in upstream.LOADS[kind][role]:
                if not _mirrored(entry, file):
                    shown = " or ".join(file) if isinstance(file, tuple) else file
                    problems.append(f"{app.name}: {role} loads {shown}, which the mirror of {entry['repo']} "
                                    f"leaves out (allow-patterns {entry.get('allowPatterns')!r})")
            if role != "--model-path":
                continue
            overrides = json.loads(_arg([str(a) for a in server["command"]], "--json-model-override-args") or "{}")
            for key, hub_id in upstream.HUB_REFERENCES.get(entry["repo"], {}).items():
                target = str(overrides.get(key, hub_id))
                ref = _entry_at(target, mount, entries)
                if ref is None or ref["name"] not in filled:
                    problems.append(f"{app.name}: {entry['repo']}'s config.json has {key}: {hub_id}, which the "
                                    f"server loads from {target}: not a mirrored cache entry (HF_HUB_OFFLINE=1 "
                                    "forbids the hub)")
                    continue
                if ref["repo"] != hub_id:
                    problems.append(f"{app.name}: {key} points at the mirror of {ref['repo']}, not {hub_id}")
                for file in upstream.REFERENCE_LOADS[key]:
                    if not _mirrored(ref, file):
                        shown = " or ".join(file) if isinstance(file, tuple) else file
                        problems.append(
                            f"{app.name}: {key} loads {shown}, which the mirror of {ref['repo']} leaves out"
                        )
    return problems


# --- observability ---------------------------------------------------------------------------------------
def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    return bool(selector.get("matchLabels")) and selector["matchLabels"].items() <= labels.items()


def observability_problems(stack: Stack, app_metrics: Iterable[str]) -> list[str]:
    """Prometheus scrapes the app's /metrics and DCGM's GPU metrics, Grafana loads the app's dashboard, and
    every series the dashboard plots is one something in the stack exports."""
    problems = []
    app = stack.apps["ensemble"]
    service = next(o for o in app.objects if o["kind"] == "Service")
    monitors = [o for o in app.objects if o["kind"] == "ServiceMonitor"]
    if not any(_selects(m["spec"]["selector"], service["metadata"]["labels"])
               and any(e.get("path") == "/metrics" and e.get("port") == "http" for e in m["spec"]["endpoints"])
               for m in monitors):
        problems.append("ensemble: no ServiceMonitor scrapes the app Service's /metrics")
    dcgm = stack.apps.get("dcgm-exporter")
    if dcgm is None or not any(o["kind"] == "ServiceMonitor" for o in dcgm.objects):
        problems.append("dcgm-exporter: no ServiceMonitor: GPU metrics are never scraped")
    kps = stack.apps.get("kube-prometheus-stack")
    sidecar = upstream.get(kps.values, "grafana.sidecar.dashboards", {}) if kps else {}
    dashboards = [o for o in app.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    if not dashboards:
        problems.append("ensemble: no Grafana dashboard ConfigMap")
    for cm in dashboards:
        label = str(sidecar.get("label", ""))
        if not sidecar.get("enabled") or cm["metadata"].get("labels", {}).get(label) != str(sidecar.get("labelValue")):
            problems.append(f"ensemble: ConfigMap {cm['metadata']['name']} lacks the label Grafana's sidecar "
                            f"loads dashboards by ({label}={sidecar.get('labelValue')})")
        if sidecar.get("searchNamespace") not in ("ALL", app.namespace):
            problems.append(f"Grafana's sidecar does not look in namespace {app.namespace}")
        known = set(app_metrics) | upstream.EXTERNAL_METRICS
        for data in cm["data"].values():
            for panel in json.loads(data)["panels"]:
                for target in panel["targets"]:
                    for name in re.findall(r"\b(ensemble_[a-z_]+|DCGM_FI_[A-Z_]+|sglang:[a-z_]+)", target["expr"]):
                        if name not in known:
                            problems.append(f"dashboard panel {panel['title']!r} plots {name}, which nothing exports")
    return problems


def app_metric_names() -> set[str]:
    """Every series name the app's /metrics can carry (agents/supervisor/metrics.py)."""
    from agents.supervisor.metrics import TurnMetrics

    metrics = TurnMetrics(circuit_states=lambda: {"supervisor": "closed"})
    return {s.name for family in metrics.registry.collect() for s in family.samples} | {
        family.name for family in metrics.registry.collect()
    } | _bucketed(metrics)


def _bucketed(metrics: Any) -> set[str]:
    # histograms and counters with labels show no samples until observed: name their series explicitly
    names = set()
    for family in metrics.registry.collect():
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        elif family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def all_problems(stack: Stack) -> dict[str, list[str]]:
    return {
        "gpu placement": gpu_placement_problems(stack),
        "disruption": disruption_problems(stack),
        "storage": storage_problems(stack),
        "duplicates": duplicate_problems(stack),
        "pins": pin_problems(stack.env),
        "operator config": operator_config_problems(stack),
        "sync policy": sync_policy_problems(stack.appset),
        "offline files": offline_file_problems(stack),
        "observability": observability_problems(stack, app_metric_names()),
    }

