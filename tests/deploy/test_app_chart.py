"""What matters in the app chart, per environment: availability, probes, stickiness, secrets, hooks."""

from __future__ import annotations

from typing import Any, get_args, get_origin
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import BaseModel

from agents.specialists.registry import all_specs
from core.settings import AuthSettings, ChatEndpoint, Settings
from tests.conftest import REPO
from tests.deploy.conftest import ENVS, Rendered

SECRET_NAME_HINTS = ("API_KEY", "DATABASE_URL", "AUTH_SECRET", "PASSWORD", "TOKEN")


@pytest.fixture(params=ENVS)
def app(request: pytest.FixtureRequest, renders: dict[tuple[str, str], Rendered]) -> Rendered:
    return renders[(request.param, "ensemble")]


def _container(app: Rendered) -> dict[str, Any]:
    return app.one("Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_hpa_scales_out_at_the_measured_users_per_replica(app: Rendered) -> None:
    """The CPU target is one replica's worth of users: usersPerReplica x CPU per active user (both measured by
    `benchmarks.chainlit_load --pace 10`, docs/benchmarks.md)."""
    values = yaml.safe_load((REPO / "deploy" / "charts" / "ensemble" / "values.yaml").read_text())["autoscaling"]
    hpa = app.of_kind("HorizontalPodAutoscaler")
    if not hpa:
        pytest.skip("autoscaling is off in this environment")
    cpu = next(m["resource"] for m in hpa[0]["spec"]["metrics"] if m["resource"]["name"] == "cpu")
    wanted = values["usersPerReplica"] * values["cpuMillicoresPerUser"]
    assert cpu["target"] == {"type": "AverageValue", "averageValue": f"{wanted}m"}


def test_at_least_two_replicas_always(app: Rendered) -> None:
    dep = app.one("Deployment")
    hpa = app.of_kind("HorizontalPodAutoscaler")
    if hpa:
        assert hpa[0]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
        assert hpa[0]["spec"]["minReplicas"] >= 2
        assert "replicas" not in dep["spec"], "HPA owns the replica count"
    else:
        assert dep["spec"]["replicas"] >= 2
    pdb = app.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] >= 1
    assert (
        pdb["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    spread = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_probes_hit_health_endpoints(app: Rendered) -> None:
    c = _container(app)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert c["command"][:3] == ["python", "-m", "chainlit_app.serve"]
    assert "0.0.0.0" in c["command"]


def test_ingress_is_alb_with_sticky_sessions(app: Rendered) -> None:
    ing = app.one("Ingress")
    ann = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert ann["alb.ingress.kubernetes.io/target-type"] == "ip"
    attrs = dict(
        kv.split("=", 1) for kv in ann["alb.ingress.kubernetes.io/target-group-attributes"].split(",")
    )
    assert attrs["stickiness.enabled"] == "true"
    assert attrs["stickiness.type"] == "lb_cookie"
    assert ann["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz"
    assert ann["alb.ingress.kubernetes.io/certificate-arn"].startswith("arn:aws:acm:")
    svc = app.one("Service")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]


def test_service_account_has_irsa_role(app: Rendered) -> None:
    sa = app.one("ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pod = app.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_secrets_are_references_only(app: Rendered) -> None:
    cm = app.one("ConfigMap", "ensemble-settings")
    for key in cm["data"]:
        assert not key.endswith(SECRET_NAME_HINTS), f"secret-like key {key} in the ConfigMap"
    env = _container(app)["env"]
    assert all("valueFrom" in e and "value" not in e for e in env)
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env}
    assert len(refs) == 1
    (es,) = [e for e in app.of_kind("ExternalSecret") if e["spec"]["target"]["name"] in refs]
    provided = {d["secretKey"] for d in es["spec"]["data"]}
    required = {
        e["valueFrom"]["secretKeyRef"]["key"] for e in env if not e["valueFrom"]["secretKeyRef"]["optional"]
    }
    assert required <= provided, "a missing required key must fail the ExternalSecret"
    remote = {d["remoteRef"]["key"] for d in es["spec"]["data"]}
    assert [f["extract"]["key"] for f in es["spec"]["dataFrom"]] == sorted(remote), "optional keys come along"
    names = {e["name"] for e in env}
    assert {"CHAINLIT_AUTH_SECRET", "ENSEMBLE_DATABASE_URL", "ENSEMBLE_SUPERVISOR__API_KEY"} <= names


def _field_exists(model: type[BaseModel], parts: list[str]) -> bool:
    name, rest = parts[0].lower(), parts[1:]
    info = model.model_fields.get(name)
    if info is None:
        return False
    if not rest:
        return True
    annotation = info.annotation
    if get_origin(annotation) is dict:  # an entry by its key: MCP__SERVERS__<NAME>__URL, ...__HEADERS__<HEADER>
        value = get_args(annotation)[1]
        return len(rest) == 1 or (isinstance(value, type) and issubclass(value, BaseModel)
                                  and _field_exists(value, rest[1:]))
    candidates = [annotation, *get_args(annotation)] if get_origin(annotation) else [annotation]
    return any(
        isinstance(c, type) and issubclass(c, BaseModel) and _field_exists(c, rest) for c in candidates
    )


def _chat_role_setting(parts: list[str]) -> bool:
    """ENSEMBLE_<ROLE>__<FIELD>: a chat endpoint of the supervisor or of a role a specialist names."""
    roles = {"supervisor"} | {spec.model_role.name for spec in all_specs() if spec.model_role}
    return len(parts) == 2 and parts[0].lower() in roles and parts[1].lower() in ChatEndpoint.model_fields


def test_every_setting_is_one_the_app_reads(app: Rendered) -> None:
    """A typo in ENSEMBLE_* would be silently ignored by pydantic-settings (extra="ignore")."""
    keys = [*app.one("ConfigMap", "ensemble-settings")["data"], *(e["name"] for e in _container(app)["env"])]
    for key in keys:
        if key.startswith("CHAINLIT_"):
            continue
        assert key.startswith("ENSEMBLE_"), key
        parts = key.removeprefix("ENSEMBLE_").split("__")
        assert _field_exists(Settings, parts) or _chat_role_setting(parts), f"{key} is not in core/settings.py"
    assert app.one("ConfigMap", "ensemble-settings")["data"]["ENSEMBLE_LOCAL_LLM__ENABLED"] == "off"


def test_login_is_required_and_the_smoke_test_logs_in_the_same_way(app: Rendered) -> None:
    settings = app.one("ConfigMap", "ensemble-settings")["data"]
    assert settings["ENSEMBLE_AUTH__MODE"] in ("password", "header")
    assert settings["ENSEMBLE_AUTH__FIRST_LOGIN_CREATES_ACCOUNT"] == "false"
    job = next(j for j in app.of_kind("Job") if j["metadata"]["name"].endswith("-smoke-test"))
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--auth") + 1] == settings["ENSEMBLE_AUTH__MODE"]
    if settings["ENSEMBLE_AUTH__MODE"] == "header":
        header = cmd[cmd.index("--header") + 1].split("=", 1)[0]
        assert header == settings.get("ENSEMBLE_AUTH__HEADER_NAME", "X-Forwarded-Email")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container(app)["env"]}
    assert env["ENSEMBLE_AUTH__SECRET"] == env["CHAINLIT_AUTH_SECRET"], "one signing key for every replica"


def test_session_cookies_are_secure_and_signed_with_a_required_secret(app: Rendered) -> None:
    settings = app.one("ConfigMap", "ensemble-settings")["data"]
    host = app.one("Ingress")["spec"]["rules"][0]["host"]
    assert settings["ENSEMBLE_AUTH__PUBLIC_URL"] == f"https://{host}"
    assert AuthSettings(public_url=settings["ENSEMBLE_AUTH__PUBLIC_URL"]).cookies_secure
    assert settings["ENSEMBLE_LIMITS__TRUSTED_PROXY_HOPS"] == "1", "client addresses as the ALB saw them"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container(app)["env"]}
    assert env["CHAINLIT_AUTH_SECRET"]["optional"] is False
    assert env["ENSEMBLE_AUTH__SECRET"]["optional"] is False


def test_migrations_run_presync_after_the_secret(app: Rendered) -> None:
    jobs = {j["metadata"]["name"]: j for j in app.of_kind("Job")}
    migrate = next(j for n, j in jobs.items() if n.endswith("-migrate"))
    ann = migrate["metadata"]["annotations"]
    assert ann["argocd.argoproj.io/hook"] == "PreSync"
    secret = migrate["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"][
        "name"
    ]
    es_ann = app.one("ExternalSecret", secret)["metadata"]["annotations"]
    assert es_ann["argocd.argoproj.io/hook"] == "PreSync"
    assert int(es_ann["argocd.argoproj.io/sync-wave"]) < int(ann["argocd.argoproj.io/sync-wave"])
    env = migrate["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "ENSEMBLE_DATABASE_URL" and "secretKeyRef" in env[0]["valueFrom"]


def test_postsync_smoke_test_sends_a_chat_turn_to_the_service(app: Rendered) -> None:
    job = next(j for j in app.of_kind("Job") if j["metadata"]["name"].endswith("-smoke-test"))
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["python", "/app/deploy/smoke_chat.py"]
    url = urlparse(cmd[cmd.index("--url") + 1])
    svc = app.one("Service")
    assert url.hostname == f"{svc['metadata']['name']}.{app.namespace}.svc.cluster.local"
    assert url.port == svc["spec"]["ports"][0]["port"]
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    login_secret = env["SMOKE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    targets = {es["spec"]["target"]["name"] for es in app.of_kind("ExternalSecret")}
    assert login_secret in targets, "the smoke-test login comes from Secrets Manager"
    smoke_es = app.one("ExternalSecret", login_secret)
    assert smoke_es["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    migrate = next(j for j in app.of_kind("Job") if j["metadata"]["name"].endswith("-migrate"))
    migrate_env = {e["name"]: e for e in migrate["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert migrate_env["SMOKE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == login_secret


def test_replicas_share_the_data_dir_outside_dev(app: Rendered) -> None:
    volumes = {v["name"]: v for v in app.one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    if app.env == "dev":
        assert "emptyDir" in volumes["data"]
        return
    claim = app.one("PersistentVolumeClaim")
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_mcp_servers_render_as_settings_the_app_reads() -> None:
    """An operator's MCP servers in values: non-secret parts in the ConfigMap as JSON the settings parse,
    the header credential as a Secret reference only."""
    import json

    from tests.deploy.conftest import REPO, deep_merge, elements, layered_values, render_chart

    element = next(el for el in elements("prod") if el["name"] == "ensemble")
    values = deep_merge(layered_values(element), {
        "mcp": {
            "servers": {"tickets": {"description": "Ticket tracker.", "url": "http://tickets.tools.svc:8000/mcp",
                                    "timeout": 20, "exemplars": ["open a ticket"]}},
            "allowedCommands": ["/usr/local/bin/uvx"],
        },
        "secrets": {"keys": {"ENSEMBLE_MCP__SERVERS__TICKETS__HEADERS__AUTHORIZATION":
                             {"key": "tickets-mcp-authorization", "optional": False}}},
    })
    objects = render_chart(REPO / element["path"], values, "ensemble", element["namespace"])
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-settings")]
    data = cm["data"]
    assert "Authorization" not in json.dumps(data) and "tickets-mcp-authorization" not in json.dumps(data)
    settings = Settings.model_validate({"mcp": {
        "servers": json.loads(data["ENSEMBLE_MCP__SERVERS"]),
        "allowed_commands": json.loads(data["ENSEMBLE_MCP__ALLOWED_COMMANDS"]),
    }})
    tickets = settings.mcp.servers["tickets"]
    assert tickets.url == "http://tickets.tools.svc:8000/mcp" and tickets.timeout == 20
    assert settings.mcp.allowed_commands == ["/usr/local/bin/uvx"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    ref = env["ENSEMBLE_MCP__SERVERS__TICKETS__HEADERS__AUTHORIZATION"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "tickets-mcp-authorization"
    assert _field_exists(Settings, ["MCP", "SERVERS", "TICKETS", "HEADERS", "AUTHORIZATION"])
    assert not _field_exists(Settings, ["MCP", "SERVERS", "TICKETS", "HEADRES", "AUTHORIZATION"]), "a typo is caught"

