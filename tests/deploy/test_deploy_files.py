"""The files in deploy/ are checked by the tools that will read them in production.

Always here: YAML parses, the compose file and the Kubernetes manifests consume every channel
queue of their configuration, the example configuration loads with the example environment, the
manifests pass the Kubernetes schema (kubernetes-validate, a dev dependency), the compose file
passes the Compose Specification (compose-spec, a dev dependency: the checks of ``docker compose
config`` without the Docker client, which has no compose plugin here) and every alert's runbook
link lands on a heading of docs/operations.md.
Where the tool exists: ``promtool`` (required in CI: Debian's ``prometheus`` package),
``docker compose config``, ``systemd-analyze verify`` and ``nginx -t`` (skipped without them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from broadcaster.config import load_settings
from broadcaster.runtime import DEFAULT_QUEUE, queue_name
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"
PRODUCTION = ROOT / "config" / "production.example.yaml"
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))
UNITS = DEPLOY / "systemd"
PROMETHEUS = DEPLOY / "prometheus"
NGINX = DEPLOY / "nginx" / "broadcaster.conf"


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            out[key] = value
    return out


def queues_of(command: list[str]) -> set[str]:
    """The -Q/--queues argument of a `broadcaster worker` command line."""
    for flag in ("-Q", "--queues"):
        if flag in command:
            return set(command[command.index(flag) + 1].split(","))
    return set()


def channel_queues(settings) -> set[str]:
    return {queue_name(c) for c in settings.channels}


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


# ---------------------------------------------------------------- example configuration


def test_production_example_loads_with_the_example_environment():
    settings = load_settings(yaml.safe_load(PRODUCTION.read_text()), env=env_file(ENV_EXAMPLE))
    assert settings.ledger.startswith("postgresql://")
    assert settings.broker.startswith("redis://:") and settings.redis, "Redis with a password, state set explicitly"
    kinds = {c.kind for c in settings.channels.values()}
    assert {"mastodon", "bluesky", "x", "email", "statuspage", "webhook"} <= kinds


def test_production_example_reads_every_secret_from_the_environment():
    text = PRODUCTION.read_text()
    values = yaml.safe_dump(yaml.safe_load(text))  # the values only, not the comments
    needed = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", values))  # no default: must be set
    assert needed, "secrets come from ${VAR}"
    missing = needed - set(env_file(ENV_EXAMPLE))
    assert not missing, f"deploy/env.example lacks {sorted(missing)}"
    data = yaml.safe_load(text)
    for name, body in data["channels"].items():
        for key in ("access_token", "app_password", "api_key", "token", "secret"):
            if key in body:
                assert str(body[key]).startswith("${"), f"channels.{name}.{key} is written in the file"


def test_production_example_fails_clearly_without_its_environment():
    from broadcaster.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        load_settings(yaml.safe_load(PRODUCTION.read_text()), env={})
    assert any("POSTGRES_PASSWORD" in line for line in exc.value.lines())


# ---------------------------------------------------------------- Docker


def test_dockerfile_is_slim_non_root_with_a_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all("slim" in f for f in froms)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK\s", text, re.M)
    assert re.search(r'^ENTRYPOINT \["broadcaster"\]', text, re.M), "one image; the command picks the role"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for needed in ("pyproject.toml", "README.md", "broadcaster/", "config/production.example.yaml"):
        assert f"!{needed}" in ignore, f"the build needs {needed}"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_names_every_part():
    services = compose()["services"]
    assert {"api", "scheduler", "redis", "postgres", "migrate", "flower"} <= set(services)
    assert [n for n in services if n.startswith("worker-")], "workers per queue group"
    assert services["flower"]["profiles"] == ["flower"], "Flower only on request"
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--requirepass" in redis_cmd
    assert "redisdata:/data" in services["redis"]["volumes"]
    assert any("pgdata" in v for v in services["postgres"]["volumes"])
    for name in ("api", "scheduler", "migrate", *tuple(n for n in services if n.startswith("worker-"))):
        s = services[name]
        assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["env_file"], name
        assert s["read_only"] is True, name
    assert services["scheduler"]["command"] == ["scheduler"]
    assert "replicas" not in services["scheduler"].get("deploy", {}), "exactly one scheduler"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_workers_consume_every_channel_queue_of_the_production_config():
    settings = load_settings(yaml.safe_load(PRODUCTION.read_text()), env=env_file(ENV_EXAMPLE))
    services = compose()["services"]
    groups = {n: queues_of(s["command"]) for n, s in services.items() if n.startswith("worker-")}
    assert all(groups.values()), "every worker names its queue group with -Q"
    consumed = set().union(*groups.values())
    assert channel_queues(settings) | {DEFAULT_QUEUE} <= consumed, "a queue nobody consumes waits forever"
    assert not consumed - channel_queues(settings) - {DEFAULT_QUEUE}, "queues for channels that do not exist"
    owners = [n for n, q in groups.items() if queue_name("status-site") in q]
    assert owners == ["worker-status-site"], "the static status page has exactly one writer"


def compose_interpolate(value, env: dict[str, str]):
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``$VAR`` and ``$$`` for a literal ``$``."""
    if isinstance(value, dict):
        return {k: compose_interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [compose_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        have = env.get(name)
        if op in (":-", "-"):
            return arg if have is None or (op == ":-" and have == "") else have
        if op in (":?", "?"):
            if have is None or (op == ":?" and have == ""):
                raise AssertionError(f"compose: required variable {name} is missing: {arg}")
            return have
        return have or ""

    return re.sub(r"(?P<escaped>\$\$)|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)", one, value)


def test_compose_file_follows_the_compose_specification():
    """What ``docker compose config`` checks, without the Docker client: the file (YAML merge
    keys resolved, variables substituted as Compose does) against the Compose Specification
    (the ``compose_spec`` Rust crate's models), and every reference between services."""
    compose_spec = pytest.importorskip("compose_spec", reason="pip install -e '.[dev]' (compose-spec)")
    env = {"BROADCASTER_ENV_FILE": str(ENV_EXAMPLE)}
    doc = compose_interpolate(compose(), env)
    compose_spec.PyCompose.from_json(json.dumps(doc)).to_spec()  # raises naming the bad key
    services = doc["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in (doc.get("volumes") or {}), f"{name}: named volume {source} is not declared"
        for ref in svc.get("configs") or []:
            assert (ref if isinstance(ref, str) else ref["source"]) in (doc.get("configs") or {}), name
    # a mistake is caught, naming the key (the check can fail)
    broken = json.loads(json.dumps(doc))
    broken["services"]["api"]["restrat"] = "always"
    with pytest.raises(ValueError, match="restrat"):
        compose_spec.PyCompose.from_json(json.dumps(broken)).to_spec()


def test_compose_interpolation_follows_compose_rules():
    env = {"SET": "v", "EMPTY": ""}
    assert compose_interpolate("${SET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$SET-$$HOME", env) == "v-d-d--v-$HOME"
    with pytest.raises(AssertionError, match="needed"):
        compose_interpolate("${UNSET:?needed}", env)


def test_docker_compose_config_validates():
    docker = shutil.which("docker")
    if not docker or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose client plugin is not installed")
    env = {"PATH": "/usr/bin:/bin", "BROADCASTER_ENV_FILE": str(ENV_EXAMPLE)}
    result = run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], env=env)
    assert result.returncode == 0, result.stderr
    result = run([docker, "compose", "-f", str(COMPOSE), "--profile", "flower", "config", "--services"], env=env)
    assert result.returncode == 0, result.stderr
    assert "flower" in result.stdout.split()


# ---------------------------------------------------------------- Kubernetes


def manifests() -> list[tuple[str, dict]]:
    out = []
    for path in K8S:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def _validator():
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate (pip install -e '.[dev]')")
    return kubernetes_validate


@pytest.mark.parametrize("version", ["1.29.0", "latest"])
def test_kubernetes_manifests_pass_the_schema(version):
    kv = _validator()
    version = kv.latest_version() if version == "latest" else version
    docs = manifests()
    assert len(docs) >= 10
    for name, doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_kubernetes_schema_check_is_live():
    kv = _validator()
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_kubernetes_has_probes_budgets_and_one_scheduler():
    docs = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in docs}
    assert ("Service", "broadcaster-api") in kinds and ("ConfigMap", "broadcaster-config") in kinds
    assert ("Secret", "broadcaster-env") in kinds and ("Job", "broadcaster-migrate") in kinds
    assert {k for k, _ in kinds if k == "PodDisruptionBudget"}
    deployments = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "Deployment"}
    api = deployments["broadcaster-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sched = deployments["broadcaster-scheduler"]["spec"]
    assert sched["replicas"] == 1 and sched["strategy"]["type"] == "Recreate"
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True, name


def test_kubernetes_workers_consume_every_channel_queue_of_the_configmap():
    docs = manifests()
    [config] = [d for _, d in docs if d["kind"] == "ConfigMap"]
    [secret] = [d for _, d in docs if d["kind"] == "Secret"]
    settings = load_settings(yaml.safe_load(config["data"]["broadcaster.yaml"]), env=secret["stringData"])
    groups = {}
    for _, d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
            groups[d["metadata"]["name"]] = queues_of(d["spec"]["template"]["spec"]["containers"][0]["args"])
    consumed = set().union(*groups.values())
    assert channel_queues(settings) | {DEFAULT_QUEUE} <= consumed
    assert not consumed - channel_queues(settings) - {DEFAULT_QUEUE}


# ---------------------------------------------------------------- Prometheus


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        unavailable("promtool (Debian package prometheus)")
    return path


def test_alert_rules_pass_promtool_check():
    result = run([_promtool(), "check", "rules", str(PROMETHEUS / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_unit_tests_pass():
    result = run([_promtool(), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_passes_promtool_check():
    result = run([_promtool(), "check", "config", "prometheus.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_promised_conditions_with_metrics_the_api_exports():
    from broadcaster.api import metrics

    sources = [Path(metrics.__file__), ROOT / "broadcaster" / "readiness.py",
               ROOT / "broadcaster" / "api" / "metrics_features.py"]  # families read at scrape time
    exported = {m for src in sources for m in re.findall(r'"(broadcaster_[a-z_]+)"', src.read_text())}
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"BroadcasterChannelBreakerOpen", "BroadcasterDeliveriesFailing", "BroadcasterDeliveriesUnknown",
            "BroadcasterBacklogGrowing", "BroadcasterSchedulerNotRunning", "BroadcasterOldestDueDeliveryOld"} <= names
    for rule in rules:
        for metric in re.findall(r"\b(broadcaster_[a-z_]+)", rule["expr"]):
            assert metric in exported, f"{rule['alert']} uses {metric}, which broadcaster/api/metrics.py does not export"


def test_every_runbook_link_lands_on_a_heading_of_the_operations_guide():
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#{1,4} (.+)$", doc, re.M)}
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        target = rule["annotations"]["runbook"].split("#", 1)[1]
        assert target in anchors, f"{rule['alert']}: docs/operations.md has no heading #{target}"


# ---------------------------------------------------------------- systemd


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    exe = Path(sys.executable).with_name("broadcaster")
    assert exe.exists(), "the broadcaster script is installed beside this Python"
    units = []
    for src in sorted(UNITS.iterdir()):
        text = src.read_text().replace("/opt/broadcaster/venv/bin/broadcaster", str(exe))
        name = src.name.replace("@.", "@social.")  # a template is verified as an instance
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    assert any("worker@social" in u for u in units) and any(u.endswith(".target") for u in units)
    result = run([analyze, "verify", "--man=no", *units], cwd=tmp_path)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line
                or "broadcaster" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


# ---------------------------------------------------------------- nginx


def test_nginx_snippet_passes_nginx_t(tmp_path):
    nginx, openssl = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None), shutil.which("openssl")
    if not nginx or not openssl:
        pytest.skip("nginx (and openssl for a throwaway certificate) not installed")
    crt, key = tmp_path / "c.crt", tmp_path / "k.key"
    made = run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1",
                "-keyout", str(key), "-out", str(crt)])
    assert made.returncode == 0, made.stderr
    site = NGINX.read_text().replace("/etc/nginx/tls/broadcaster.crt", str(crt)).replace(
        "/etc/nginx/tls/broadcaster.key", str(key))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n")
    result = run([str(nginx), "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", f"{tmp_path}/"])
    assert result.returncode == 0, result.stderr
    for must in ("client_max_body_size 256k", "proxy_request_buffering on", "limit_req_zone", "proxy_read_timeout"):
        assert must in site


# ---------------------------------------------------------------- the reverse proxy, trusted


def _proxies_of(config_text: str, env: dict[str, str]) -> tuple[str, ...]:
    return load_settings(yaml.safe_load(config_text), env=env).api.trusted_proxies


def test_every_deployment_trusts_exactly_its_own_reverse_proxy():
    """nginx sends X-Forwarded-For/-Proto; each way of running tells the API who nginx is, so
    clients keep their own address (per-address limits) and cookies know they travel over https."""
    import ipaddress

    site = NGINX.read_text()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site
    upstream = re.search(r"upstream broadcaster_api \{\s*server ([0-9.]+):", site)
    assert upstream, "nginx proxies to the API on an address"
    base = env_file(ENV_EXAMPLE)
    production = PRODUCTION.read_text()

    unit = (UNITS / "broadcaster-api.service").read_text()
    systemd_env = dict(line.split("=", 2)[1:] for line in unit.splitlines() if line.startswith("Environment="))
    proxies = _proxies_of(production, {**base, **systemd_env})
    assert upstream.group(1) in proxies, "systemd: nginx on this host connects from loopback"

    data = compose_interpolate(compose(), base)
    api_env = data["services"]["api"]["environment"]
    assert api_env["BROADCASTER_CONFIG"] == "/etc/broadcaster/broadcaster.yaml"
    gateway = data["networks"]["default"]["ipam"]["config"][0]["gateway"]
    subnet = ipaddress.ip_network(data["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(gateway) in subnet
    assert _proxies_of(production, {**base, **api_env}) == (gateway,), "compose: only the gateway is trusted"

    config = next(d for _, d in manifests() if d["kind"] == "ConfigMap")
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    api = next(d for _, d in manifests() if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("api"))
    env = {e["name"]: e["value"] for e in api["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    k8s = _proxies_of(config["data"]["broadcaster.yaml"], {**secret["stringData"], **env})
    assert k8s and all(ipaddress.ip_network(p) for p in k8s), "kubernetes: the ingress pods are trusted"


def test_without_a_trusted_proxy_setting_nothing_forwarded_is_believed():
    base = {k: v for k, v in env_file(ENV_EXAMPLE).items() if k != "BROADCASTER_TRUSTED_PROXIES"}
    config = next(d for _, d in manifests() if d["kind"] == "ConfigMap")
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    assert _proxies_of(config["data"]["broadcaster.yaml"], secret["stringData"]) == ()
    assert _proxies_of(PRODUCTION.read_text(), base) == ("127.0.0.1", "::1")  # the proxy on this host
