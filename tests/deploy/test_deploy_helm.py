"""The Helm chart (deploy/helm/chartagent) without a cluster: linted and rendered by Helm v4
(helm-python-sdk) for each values profile, every manifest checked by kubernetes-validate --strict
against Kubernetes 1.30, and values.schema.json refusing what it must."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from monitoring_checks import FILES, promtool

from agent.settings import Settings, env_var
from tools.imaging.wsi import MAX_PATCHES
from tools.medgemma.tasks import slide_description

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "chartagent"
KUBE_VERSION = "1.30.0"
# Gemma 3's processor spends 260 tokens per image ("\n\n", start, 256 soft tokens, end, "\n\n").
TOKENS_PER_IMAGE = 260
CT_SLICES = 85
PROFILES = ("values.yaml", "values-gpu.yaml", "values-production.yaml")


def profile_values(profile: str) -> dict[str, Any] | None:
    """The overrides of a profile, as `helm template -f FILE` takes them (None: the defaults)."""
    return None if profile == "values.yaml" else helm.values_from_yaml((CHART / profile).read_text())


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="chartagent", namespace="chartagent")
    docs: list[dict[str, Any]] = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@pytest.fixture(scope="module", params=PROFILES)
def manifests(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(profile_values(request.param))


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] == "Deployment":
            yield doc["metadata"]["name"], doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, template in pod_templates(docs):
        yield name, template["spec"]


@pytest.mark.parametrize("profile", PROFILES)
def test_chart_lints_without_warnings(profile: str) -> None:
    report = helm.lint(CHART, profile_values(profile), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_manifest_is_valid_kubernetes(manifests: tuple[str, list[dict[str, Any]]]) -> None:
    profile, docs = manifests
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "CronJob", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"} <= kinds
    if profile == "values-production.yaml":
        assert "HorizontalPodAutoscaler" in kinds


def test_the_validator_refuses_a_broken_manifest(manifests: tuple[str, list[dict[str, Any]]]) -> None:
    # The check above can fail: an unknown field in a container is refused under --strict.
    _, docs = manifests
    deployment = json.loads(json.dumps(by_kind(docs, "Deployment")["chartagent-api"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"config": {"CHARTAGENT_MODEL_API_KEY": "not-in-a-configmap"}}, "CHARTAGENT_MODEL_API_KEY"),
        ({"config": {"FHIR_URL": "https://fhir.example.org"}}, "FHIR_URL"),
        ({"vllm": {"maxModelLen": 32768}}, "maxModelLen"),  # too short for a whole-slide prompt
        ({"vllm": {"imagesPerPrompt": 90}}, "imagesPerPrompt"),
        ({"api": {"replicaz": 3}}, "replicaz"),
        ({"api": {"ingress": {"cookieName": "route; Domain=evil"}}}, "cookieName"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"nightly": {"executor": "ray"}}, "executor"),
        ({"nightly": {"since": "yesterday"}}, "since"),
        ({"nightly": {"pruneAfterDays": 0}}, "pruneAfterDays"),
        ({"networkPolicy": {"egress": {"internet": {"cidrs": ["0.0.0.0/0"], "ports": [443]}}}}, "internet"),
        ({"metrics": {"port": 80}}, "port"),
        ({"metrics": {"scraperNamespace": ""}}, "scraperNamespace"),
        ({"metrics": {"podMonitor": {"interval": "30 seconds"}}}, "interval"),
        ({"metrics": {"prometheusRule": {"labels": {"release": 1}}}}, "release"),
    ],
)
def test_the_schema_refuses_bad_values(overrides: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match=complaint):
        chart.render(overrides, name="chartagent")


def test_the_api_is_probed_and_every_chartagent_pod_is_locked_down(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = manifests
    api = by_kind(docs, "Deployment")["chartagent-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for name, spec in pod_specs(docs):
        if name.endswith("-vllm"):
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"], name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/tmp", "/var/lib/chartagent"} <= mounts, name


def test_worker_and_nightly_job_run_the_job_commands(manifests: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = manifests
    worker = by_kind(docs, "Deployment")["chartagent-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["python", "-m", "agent.jobs.temporal_worker", "--concurrency", "4"]
    nightly = by_kind(docs, "CronJob")["chartagent-nightly"]
    assert nightly["spec"]["concurrencyPolicy"] == "Forbid"
    container = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "chartagent", "jobs", "run", "--cohort", "all", "--since", "last", "--executor", "temporal",
    ]  # fmt: skip
    (prune,) = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
    assert prune["args"] == ["chartagent", "jobs", "prune", "--older-than", "90"]
    assert prune["securityContext"] == container["securityContext"]
    assert prune["volumeMounts"] == container["volumeMounts"]


def test_pruning_before_the_nightly_run_can_be_turned_off() -> None:
    nightly = by_kind(render({"nightly": {"pruneAfterDays": None}}), "CronJob")["chartagent-nightly"]
    assert "initContainers" not in nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    nightly = by_kind(render({"nightly": {"pruneAfterDays": 7}}), "CronJob")["chartagent-nightly"]
    (prune,) = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
    assert prune["args"][-2:] == ["--older-than", "7"]


def test_secrets_come_from_existing_secrets_and_config_holds_real_settings(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    profile, docs = manifests
    assert not [doc for doc in docs if doc["kind"] == "Secret"]  # no secret material in a release
    config = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    known = {env_var(field) for field in Settings.model_fields}
    # The settings ignore unknown variables: a misspelt name would be silently dropped.
    assert set(config) <= known, set(config) - known
    api = by_kind(docs, "Deployment")["chartagent-api"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in api["containers"][0]["env"]}
    assert set(env) - {"MPLCONFIGDIR", "SSL_CERT_FILE"} <= known
    if profile == "values-production.yaml":
        for name in (
            "CHARTAGENT_SERVICE_KEYS",
            "CHARTAGENT_MODEL_API_KEY",
            "CHARTAGENT_CHECKPOINT_URL",
            "CHARTAGENT_APP_SESSION_KEY",
        ):
            assert "secretKeyRef" in env[name]["valueFrom"], name
        key_path = Path(env["CHARTAGENT_SMART_PRIVATE_KEY"]["value"])
        mounts = {m["name"]: m["mountPath"] for m in api["containers"][0]["volumeMounts"]}
        assert key_path.parent == Path(mounts["smart-key"])
        smart = next(v for v in api["volumes"] if v["name"] == "smart-key")
        assert smart["secret"]["secretName"] == "chartagent-smart"


def test_network_policy_admits_the_ingress_namespace_only_and_opens_no_port_to_everyone(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    profile, docs = manifests
    policies = by_kind(docs, "NetworkPolicy")
    api = policies["chartagent-api"]["spec"]
    assert api["policyTypes"] == ["Ingress", "Egress"]
    rule, scrape = api["ingress"]
    ingress_namespace = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": ingress_namespace}}]
    assert rule["ports"] == [{"port": 8100, "protocol": "TCP"}]
    # Prometheus's namespace reaches the metrics port only, of the API and of the workers.
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert scrape == {"from": monitoring, "ports": [{"port": 9464, "protocol": "TCP"}]}
    jobs = policies["chartagent-jobs"]["spec"]
    assert jobs["ingress"] == [scrape]
    assert "Ingress" in jobs["policyTypes"]
    for spec in (api, jobs):
        assert all(egress.get("to") for egress in spec["egress"])  # a rule without `to` allows any peer
    if profile == "values-production.yaml":
        ports = {port["port"] for egress in api["egress"] for port in egress["ports"]}
        assert ports == {53, 443, 5432, 7233}


def session_seconds(values: dict[str, Any] | None) -> int:
    """The app session's lifetime the chart's values give the service (the setting's default unset)."""
    configured = ((values or {}).get("config") or {}).get("CHARTAGENT_APP_SESSION_LIFETIME_S")
    return math.ceil(float(configured)) if configured else int(Settings().app_session_lifetime_s)


def assert_sticky(docs: list[dict[str, Any]], seconds: int, public_url: str) -> None:
    """Each user's requests keep reaching one API replica (its sessions live in its memory), for
    the session's lifetime: through the Service by client IP, through the Ingress by cookie."""
    service = by_kind(docs, "Service")["chartagent-api"]["spec"]
    assert service["sessionAffinity"] == "ClientIP"
    assert service["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == min(seconds, 86400)
    for ingress in by_kind(docs, "Ingress").values():
        notes = ingress["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
        assert notes["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
        assert notes["nginx.ingress.kubernetes.io/session-cookie-max-age"] == str(seconds)
        assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # the chat's event stream
        url = urlsplit(public_url)
        assert (
            notes["nginx.ingress.kubernetes.io/session-cookie-secure"] == str(url.scheme == "https").lower()
        )
        [rule] = ingress["spec"]["rules"]
        assert rule["host"] == url.hostname
        [path] = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert backend["name"] == "chartagent-api"
        assert backend["port"]["name"] in {p["name"] for p in service["ports"]}
        if url.scheme == "https":
            assert ingress["spec"]["tls"][0]["hosts"] == [url.hostname]


def test_every_user_keeps_reaching_one_api_replica(manifests: tuple[str, list[dict[str, Any]]]) -> None:
    profile, docs = manifests
    values = profile_values(profile)
    public_url = (values or {}).get("publicUrl") or helm.values_from_yaml(
        (CHART / "values.yaml").read_text()
    )["publicUrl"]
    assert_sticky(docs, session_seconds(values), public_url)
    # What makes it matter: every profile runs several replicas (under autoscaling, its minimum).
    autoscaler = by_kind(docs, "HorizontalPodAutoscaler").get("chartagent-api")
    api = by_kind(docs, "Deployment")["chartagent-api"]["spec"]
    assert (autoscaler["spec"]["minReplicas"] if autoscaler else api["replicas"]) > 1
    if profile == "values-production.yaml":
        [ingress] = by_kind(docs, "Ingress").values()
        assert ingress["spec"]["tls"][0]["secretName"] == "chartagent-tls"


@pytest.mark.parametrize(("lifetime", "same_site"), [("3600", "none"), ("172800.5", None)])
def test_stickiness_follows_the_session_settings(lifetime: str, same_site: str | None) -> None:
    config = {"CHARTAGENT_APP_SESSION_LIFETIME_S": lifetime}
    if same_site:
        config["CHARTAGENT_APP_COOKIE_SAMESITE"] = same_site
    values = {"config": config, "api": {"ingress": {"enabled": True, "tlsSecret": "tls"}}}
    docs = render(values)
    public_url = helm.values_from_yaml((CHART / "values.yaml").read_text())["publicUrl"]
    assert_sticky(docs, session_seconds(values), public_url)
    [ingress] = by_kind(docs, "Ingress").values()
    # The route cookie goes wherever the session cookie goes (inside the EHR's frame: None).
    expected = "None" if same_site == "none" else "Lax"
    assert (
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/session-cookie-samesite"] == expected
    )
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_an_https_ingress_needs_its_certificate() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError, match=r"api\.ingress\.tlsSecret"):
        chart.render({"api": {"ingress": {"enabled": True}}}, name="chartagent")


def test_gpu_profile_serves_medgemma_with_the_recipe() -> None:
    docs = render(profile_values("values-gpu.yaml"))
    vllm = by_kind(docs, "Deployment")["chartagent-vllm"]["spec"]["template"]["spec"]["containers"][0]
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in vllm["args"])
    assert flags["model"] == "google/medgemma-1.5-4b-it"
    assert flags["dtype"] == "bfloat16"
    # The largest prompts: a whole-slide description (its patches, text, answer) and a CT study.
    wsi_tokens = MAX_PATCHES * TOKENS_PER_IMAGE + 512 + slide_description.DEFAULT_SETTINGS.max_new_tokens
    assert int(flags["max-model-len"]) >= max(wsi_tokens, 32768)
    assert json.loads(flags["limit-mm-per-prompt"])["image"] >= max(MAX_PATCHES, CT_SLICES)
    assert "enable-prefix-caching" in flags
    assert int(flags["max-num-seqs"]) >= 1
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = by_kind(docs, "ConfigMap")["chartagent"]["data"]
    assert config["CHARTAGENT_MODEL_BACKEND"] == "openai"
    # Outside local, ChartAgent refuses plain http to a model server: vLLM serves HTTPS, and the
    # ChartAgent pods trust the bundle that holds its CA.
    assert config["CHARTAGENT_MODEL_URL"] == "https://chartagent-vllm:8000/v1"
    assert "--ssl-certfile=/etc/vllm/tls/tls.crt" in vllm["args"]
    assert vllm["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "chartagent-vllm" in by_kind(docs, "Service")
    api = by_kind(docs, "Deployment")["chartagent-api"]["spec"]["template"]["spec"]["containers"][0]
    cert_file = next(e["value"] for e in api["env"] if e["name"] == "SSL_CERT_FILE")
    mounts = {m["name"]: m["mountPath"] for m in api["volumeMounts"]}
    assert Path(cert_file).parent == Path(mounts["trust-bundle"])


def test_vllm_over_plain_http_is_refused_outside_local() -> None:
    plain = {"vllm": {"enabled": True}}
    refused = pytest.raises(helm.HelmRenderError, match=r"needs vllm\.tls\.existingSecret")
    with helm.Chart.load(CHART) as chart, refused:
        chart.render(plain, name="chartagent")
    local = render({**plain, "config": {"CHARTAGENT_ENVIRONMENT": "local"}})
    config = by_kind(local, "ConfigMap")["chartagent"]["data"]
    assert config["CHARTAGENT_MODEL_URL"] == "http://chartagent-vllm:8000/v1"


def test_the_api_and_the_workers_serve_metrics_on_their_own_port(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    """Scraped from the pods on the `metrics` port (never through the API's Service), with the
    settings that make `chartagent serve` and the workers serve it on every interface."""
    _, docs = manifests
    deployments = by_kind(docs, "Deployment")
    for name in ("chartagent-api", "chartagent-worker"):
        template = deployments[name]["spec"]["template"]
        notes = template["metadata"]["annotations"]
        assert (notes["prometheus.io/scrape"], notes["prometheus.io/port"]) == ("true", "9464"), name
        [container] = template["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"], name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[env_var("metrics_port")] == "9464"
        assert env[env_var("metrics_address")] == "0.0.0.0"
    service_ports = {p["targetPort"] for p in by_kind(docs, "Service")["chartagent-api"]["spec"]["ports"]}
    assert "metrics" not in service_ports
    assert 9464 not in service_ports


def test_metrics_on_the_apis_own_port_are_refused() -> None:
    with (
        helm.Chart.load(CHART) as chart,
        pytest.raises(helm.HelmRenderError, match=r"must differ from api\.port"),
    ):
        chart.render({"metrics": {"port": 8100}}, name="chartagent")


def test_metrics_can_be_turned_off() -> None:
    docs = render({"metrics": {"enabled": False}})
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            assert all(p["name"] != "metrics" for p in container.get("ports", [])), name
            assert all("METRICS" not in e["name"] for e in container.get("env", [])), name
    policies = by_kind(docs, "NetworkPolicy")
    assert len(policies["chartagent-api"]["spec"]["ingress"]) == 1
    assert "ingress" not in policies["chartagent-jobs"]["spec"]
    for doc in by_kind(docs, "Deployment").values():
        assert "prometheus.io/scrape" not in doc["spec"]["template"]["metadata"]["annotations"]


MONITORING = {
    "metrics": {
        "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "dashboard": {"enabled": True},
    }
}
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and `In` expressions) selects `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))


def test_the_operator_and_grafana_get_a_pod_monitor_the_rules_and_the_dashboard(tmp_path: Path) -> None:
    docs = render({**(profile_values("values-gpu.yaml") or {}), **MONITORING})  # vLLM's pods too
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            # The Prometheus Operator's own kinds: no Kubernetes schema knows them; checked below.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    # The rules as the file holds them, loadable by Prometheus: promtool checks what was rendered.
    [rule] = by_kind(docs, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((FILES / "chartagent-alerts.yaml").read_text())
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump(rule["spec"]))
    checked = promtool("check", "rules", "rendered.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    every = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {every} rules found" in checked.stdout

    # The pod monitor scrapes the API's and the workers' pods on their `metrics` port, no others.
    [monitor] = by_kind(docs, "PodMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    chosen = set()
    for name, template in pod_templates(docs):
        if selects(monitor["spec"]["selector"], template["metadata"]["labels"]):
            chosen.add(name)
            ports = [p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
            assert "metrics" in ports, name
    assert chosen == {"chartagent-api", "chartagent-worker"}

    # The dashboard for Grafana's sidecar, as the file holds it.
    board = by_kind(docs, "ConfigMap")["chartagent-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["chartagent-dashboard.json"]) == json.loads(
        (FILES / "chartagent-dashboard.json").read_text()
    )


def test_without_a_nightly_job_the_rules_leave_out_the_no_outcome_alert(tmp_path: Path) -> None:
    [rule] = by_kind(render({**MONITORING, "nightly": {"enabled": False}}), "PrometheusRule").values()
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    every = {
        r["alert"]
        for g in yaml.safe_load((FILES / "chartagent-alerts.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    assert alerts == every - {"ChartAgentNoPatientSummarized"}
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump(rule["spec"]))
    checked = promtool("check", "rules", "rendered.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("overrides", [None, {"metrics": {**MONITORING["metrics"], "enabled": False}}])
def test_no_operator_object_or_dashboard_unless_asked(
    overrides: dict[str, Any] | None,
) -> None:
    docs = render(overrides)
    assert not [d for d in docs if d["kind"] in OPERATOR_KINDS]
    assert "chartagent-dashboard" not in by_kind(docs, "ConfigMap")
