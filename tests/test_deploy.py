"""The deploy files, checked without a container engine or a cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tracker.settings import Settings
from tracker.store.cluster import cluster_address

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s` applies: its resources, namespaced and labelled."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"] for d in documents(DEPLOY / "k8s" / name)]
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_pinned_and_not_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(bases) == 2 and all(":" in b and "latest" not in b for b in bases)
    assert "USER 10001" in text


def test_the_kubernetes_manifests_match_their_schemas(tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(rendered()))
    validate = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(validate), "--strict", "-k", "1.30.0", str(out)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" in result.stdout or result.stdout == ""


def test_the_kubernetes_install_has_what_an_operator_needs() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered()}
    assert {("Deployment", "tracker-api"), ("Service", "tracker-api"),
            ("Deployment", "tracker-worker"), ("StatefulSet", "redis"),
            ("ConfigMap", "tracker-config"), ("Secret", "tracker-secrets"),
            ("PodDisruptionBudget", "tracker-api"),
            ("PodDisruptionBudget", "tracker-worker")} <= kinds  # fmt: skip
    by_name = {d["metadata"]["name"]: d for d in rendered() if d["kind"] == "Deployment"}
    api = by_name["tracker-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = by_name["tracker-worker"]["spec"]["template"]["spec"]
    config = next(d for d in rendered() if d["kind"] == "ConfigMap")["data"]
    job_timeout = 15 + 15  # the default: the longer HTTP time-out + 15 s
    assert worker["terminationGracePeriodSeconds"] > job_timeout
    assert worker["terminationGracePeriodSeconds"] > int(config["TRACKER_SHUTDOWN_GRACE"])


def test_the_compose_file_has_redis_the_api_and_two_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert "redis-data" in compose["volumes"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("redis", "api", "worker"):
        assert services[name]["healthcheck"]["test"]
    assert services["api"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_cluster_compose_file_puts_the_records_on_a_cluster_and_arq_beside_it() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.cluster.yaml").read_text())
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if name.startswith("node-")}
    assert len(nodes) == 6
    addresses = {n["networks"]["cluster"]["ipv4_address"] for n in nodes.values()}
    create = " ".join(services["cluster-init"]["entrypoint"])
    assert "--cluster-replicas 1" in create
    assert all(f"{address}:6379" in create for address in addresses)
    for node in nodes.values():
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command
        assert "--maxmemory-policy noeviction" in command
    for name in ("api", "worker"):
        env = services[name]["environment"]
        settings = Settings.from_env(env | {"QUICKROUTER_API_KEY": "sk-test"})
        cluster = cluster_address(str(settings.redis_url))
        assert cluster is not None and {host for host, _ in cluster.nodes} <= addresses
        assert settings.arq_redis_url == "redis://redis:6379/0"  # compose.yaml's own Redis
        assert settings.redis_wait_replicas == 1
        assert settings.partitions == 3  # one per primary
        assert services[name]["depends_on"]["cluster-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_the_kubernetes_cluster_overlay_points_the_records_at_a_cluster() -> None:
    overlay = yaml.safe_load((DEPLOY / "k8s-cluster" / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../k8s"]
    (patch,) = overlay["patches"]
    config = next(d for d in rendered() if d["kind"] == "ConfigMap")["data"]
    for op in yaml.safe_load(patch["patch"]):
        key = op["path"].removeprefix("/data/")
        assert (key in config) == (op["op"] == "replace")
        config[key] = op["value"]
    settings = Settings.from_env(config | {"QUICKROUTER_API_KEY": "sk-test"})
    cluster = cluster_address(str(settings.redis_url))
    assert cluster is not None and cluster.tls
    assert settings.arq_redis_url == "redis://redis:6379/0"  # the base's own Redis, for arq
    assert settings.redis_wait_replicas == 1
    assert settings.partitions == 6  # a multiple of three primaries, room for six


def test_the_alert_rules_parse_and_cover_the_alarms() -> None:
    rules = [r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
             ["groups"] for r in g["rules"]]  # fmt: skip
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a broken expression
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    exprs = " ".join(r["expr"] for r in rules)
    for metric in ("qrtracker_dead_deliveries_total", "qrtracker_oldest_overdue_seconds",
                   "qrtracker_upstream_responses_total", "qrtracker_origins_open",
                   "qrtracker_redis_used_memory_bytes",
                   "qrtracker_redis_identity_lost"):  # fmt: skip
        assert metric in exprs


def test_every_alert_links_its_runbook_page_and_every_page_is_an_alerts() -> None:
    rules = [r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
             ["groups"] for r in g["rules"]]  # fmt: skip
    root = DEPLOY.parent
    nav = (root / "mkdocs.yml").read_text()
    for rule in rules:
        page = rule["annotations"]["runbook"]
        assert page == f"docs/runbooks/{rule['alert']}.md"
        text = (root / page).read_text()
        assert text.startswith(f"# {rule['alert']}\n")
        assert "## What to check" in text and "## What to do" in text
        assert page.removeprefix("docs/") in nav  # in the site's navigation
    pages = {p.stem for p in (root / "docs" / "runbooks").glob("*.md")} - {"index"}
    assert pages == {r["alert"] for r in rules}


def test_the_dashboard_queries_only_metrics_the_tracker_has() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    tracker = Path(__file__).resolve().parent.parent / "tracker"
    source = "".join((tracker / name).read_text() for name in ("metrics.py", "store/gauges.py"))
    for expr in exprs:
        promql_parser.parse(expr)
        names = {w for w in expr.replace("(", " ").replace(")", " ").split()
                 if w.startswith("qrtracker_")}  # fmt: skip
        for name in names:
            base = name.split("{")[0].split("[")[0]
            for suffix in ("_bucket", "_count", "_sum"):
                base = base.removesuffix(suffix)
            stem = base.removesuffix("_total")
            assert stem in source, f"{base} is defined in neither metrics.py nor store/gauges.py"


@pytest.mark.parametrize("name", ["compose.yaml", "compose.cluster.yaml", "prometheus/alerts.yaml"])
def test_yaml_files_parse(name: str) -> None:
    assert documents(DEPLOY / name)


def test_redis_refuses_writes_before_its_container_is_killed() -> None:
    """maxmemory is set, with noeviction, below the container's memory limit: Redis refuses a
    write (which the tracker retries) before the kernel kills it (and the AOF reload loops)."""
    redis_set = yaml.safe_load_all((DEPLOY / "k8s" / "redis.yaml").read_text())
    (container,) = [
        c for doc in redis_set if doc and doc["kind"] == "StatefulSet"
        for c in doc["spec"]["template"]["spec"]["containers"]
    ]  # fmt: skip
    args = container["args"]
    maxmemory = args[args.index("--maxmemory") + 1]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert maxmemory.endswith("mb") and int(maxmemory[:-2]) <= 0.7 * 1024
    assert container["resources"]["limits"]["memory"] == "1Gi"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "--maxmemory" in compose["services"]["redis"]["command"]
