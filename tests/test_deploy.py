"""deploy/: Kubernetes manifests, Prometheus rules and their tests, Grafana dashboard.

No root, no cluster: manifests are validated offline against the Kubernetes API schemas
(kubernetes-validate, strict), rules with promtool (Debian's `prometheus` package, which
`make deps` installs; a missing promtool fails these tests, it never skips them).

`python tests/test_deploy.py --write-rule-crd` regenerates deploy/prometheus-rule-crd.yaml
from deploy/prometheus-rules.yaml.
"""

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

from pod_stats.cli import DEFAULT_PORT
from pod_stats.exporter import CONTAINER_METRICS
from pod_stats.exporter import POD_METRICS as POD_FAMILIES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = DEPLOY / "daemonset.yaml"
RULES = DEPLOY / "prometheus-rules.yaml"
RULES_TEST = DEPLOY / "prometheus-rules.test.yaml"
RULE_CRD = DEPLOY / "prometheus-rule-crd.yaml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"

# Oldest Kubernetes the manifests support (volumeMounts[].recursiveReadOnly) and the newest
# schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")

# The exporter's contract (pod-stats serve): every metric a rule or panel may use. A figure's
# series, its pod's (pod_stats_pod_…), and the failed opens by errno; tests/test_figures.py checks
# a real /metrics serves each of them.
POD_METRICS = {name + ("_total" if counter else "") for name, _, _, counter in CONTAINER_METRICS + POD_FAMILIES} | {
    "pod_stats_file_open_errors_by_errno_total",
    "pod_stats_pod_info",
    "pod_stats_pod_labels",
}
AGENT_METRICS = {
    "pod_stats_bpf_program_run_seconds_total",
    "pod_stats_bpf_program_runs_total",
    "pod_stats_bpf_map_entries",
    "pod_stats_bpf_map_max_entries",
    "pod_stats_bpf_map_full_drops_total",
    "pod_stats_bpf_program_misses_total",
    "pod_stats_sample_duration_seconds",
    "pod_stats_last_sample_timestamp_seconds",
    "pod_stats_unresolved_cgroups",
    "pod_stats_probe_attached",
    "pod_stats_build_info",
}
CONTRACT_METRICS = POD_METRICS | AGENT_METRICS | {"up"}

REQUIRED_ALERTS = {
    "PodStatsEventsMissed",
    "PodStatsMemoryNearLimit",
    "PodStatsOpenErrorStorm",
    "PodStatsOpenRateAnomaly",
    "PodStatsAgentDown",
    "PodStatsMapFull",
}

# What deploy/daemonset.yaml documents, capability by capability. SYS_RESOURCE is the
# documented opt-in for 5.8–5.10 kernels; nothing else may ever be added.
REQUIRED_CAPABILITIES = {"BPF", "PERFMON"}
ALLOWED_CAPABILITIES = REQUIRED_CAPABILITIES | {"SYS_RESOURCE"}


# -- helpers ------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict]:
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


@cache
def manifests() -> dict[str, dict]:
    """deploy/daemonset.yaml by kind (one object of each kind)."""
    by_kind: dict[str, dict] = {}
    for doc in load_documents(MANIFESTS):
        assert doc["kind"] not in by_kind, f"two {doc['kind']} objects in {MANIFESTS.name}"
        by_kind[doc["kind"]] = doc
    return by_kind


def pod_spec() -> dict:
    return manifests()["DaemonSet"]["spec"]["template"]["spec"]


def agent_container() -> dict:
    containers = pod_spec()["containers"]
    assert len(containers) == 1, "one container: pod-stats"
    return containers[0]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (make deps installs it)", pytrace=False)
    return path


def run_promtool(*args: str) -> None:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana's $variables allowed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LISTS.sub(" ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0].isdigit() or token.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):  # a function or aggregation
            continue
        names.add(token)
    return names


def test_metric_names_extractor():
    assert metric_names(
        'sum by (namespace, pod) (rate(pod_stats_file_opens_total{pod=~"$pod"}[$__rate_interval]))'
    ) == {"pod_stats_file_opens_total"}
    assert metric_names("a:b:rate5m > 3 * avg_over_time(a:b:rate5m[1h] offset 30m) and on (x) up == 0") == {
        "a:b:rate5m",
        "up",
    }
    assert metric_names("time() - max without (instance) (x_seconds) * 1e9") == {"x_seconds"}


def rule_groups() -> list[dict]:
    return load_documents(RULES)[0]["groups"]


def rules() -> Iterator[dict]:
    for group in rule_groups():
        yield from group["rules"]


def dashboard() -> dict:
    with open(DASHBOARD) as handle:
        return json.load(handle)


def dashboard_panels() -> Iterator[dict]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard_panels() for target in panel.get("targets", [])]


# -- every file parses --------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.yaml")), ids=lambda path: path.name)
def test_yaml_parses(path):
    documents = load_documents(path)
    assert documents, f"{path.name} holds no YAML document"
    assert all(isinstance(doc, dict) for doc in documents)


# -- Kubernetes manifests -----------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(version):
    import kubernetes_validate

    for doc in load_documents(MANIFESTS):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version} "
                f"at {path}: {error.message}",
                pytrace=False,
            )


def test_manifests_are_the_expected_objects():
    assert set(manifests()) == {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Service",
        "NetworkPolicy",
    }
    for kind, doc in manifests().items():
        if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "pod-stats", kind
    # hostPath volumes and added capabilities are beyond Pod Security "baseline"
    labels = manifests()["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_rbac_grants_only_the_pod_listing_the_code_makes():
    role = manifests()["ClusterRole"]
    # pod_stats/names.py makes one request: GET /api/v1/pods?fieldSelector=spec.nodeName=… (list)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    names = (ROOT / "pod_stats" / "names.py").read_text()
    assert names.count("urlopen(") == 1 and '"/api/v1/pods?' in names.replace("{self.api_url}", "")
    assert "watch" not in re.sub(r"#.*|\"\"\"[\s\S]*?\"\"\"", "", names).lower()
    binding = manifests()["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = manifests()["ServiceAccount"]["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    assert pod_spec()["serviceAccountName"] == account["name"]


def _all_values(node, key):
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from _all_values(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _all_values(item, key)


def test_daemonset_is_not_privileged():
    assert True not in list(_all_values(manifests()["DaemonSet"], "privileged"))
    spec = pod_spec()
    for host_namespace in ("hostPID", "hostNetwork", "hostIPC"):
        assert not spec.get(host_namespace, False), host_namespace
    security = agent_container()["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    added = set(security["capabilities"]["add"])
    assert REQUIRED_CAPABILITIES <= added <= ALLOWED_CAPABILITIES, added
    # seccomp is chosen explicitly (see the comment in the manifest), never left to chance
    assert security["seccompProfile"]["type"] in ("Unconfined", "RuntimeDefault", "Localhost")


def test_every_host_path_is_mounted_read_only():
    host_paths = {
        volume["name"]: volume["hostPath"]["path"] for volume in pod_spec()["volumes"] if "hostPath" in volume
    }
    assert host_paths, "the agent reads the host's cgroupfs, tracefs and kubelet's log dir"
    mounts = {mount["name"]: mount for mount in agent_container()["volumeMounts"]}
    for name, path in host_paths.items():
        assert name in mounts, f"hostPath {path} is never mounted"
        assert mounts[name].get("readOnly") is True, f"hostPath {path} is mounted writable"
    assert sorted(host_paths.values()) == sorted(
        ["/sys/fs/cgroup", "/var/log/pods", "/var/log/containers", "/sys/kernel/tracing", "/proc"]
    )


def _args() -> dict[str, str]:
    args = agent_container()["args"]
    assert args[0] == "serve"
    options = {}
    for arg in args[1:]:
        name, _, value = arg.partition("=")
        options[name] = value
    return options


def test_daemonset_args_are_serve_options():
    import click

    from pod_stats.cli import cli

    serve = cli.commands["serve"]
    parser = serve.make_parser(click.Context(serve))
    try:
        parser.parse_args(list(agent_container()["args"][1:]))
    except click.UsageError as error:
        pytest.fail(f"the DaemonSet's args are not `pod-stats serve` options: {error}", pytrace=False)


def test_daemonset_args_match_mounts_and_ports():
    options = _args()
    mount_paths = {mount["mountPath"] for mount in agent_container()["volumeMounts"]}
    assert "--cgroup-root" not in options, "the cgroup root is set once, in the environment"
    assert _env()[_envvar("cgroup_root")]["value"] in mount_paths
    assert {f"{options['--log-dir']}/pods", f"{options['--log-dir']}/containers"} <= mount_paths
    assert "/sys/kernel/tracing" in mount_paths
    port = int(options["--web.listen-address"].rsplit(":", 1)[1])
    assert port == DEFAULT_PORT
    assert agent_container()["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]


RECORD_PATCH = DEPLOY / "daemonset-record.patch.json"


def recording_daemonset() -> dict:
    """The DaemonSet with deploy/daemonset-record.patch.json applied (`kubectl patch --type json`)."""
    import jsonpatch

    return jsonpatch.apply_patch(manifests()["DaemonSet"], json.loads(RECORD_PATCH.read_text()))


def test_the_daemonset_does_not_record_by_default():
    assert not any(arg.startswith("--record") for arg in agent_container()["args"])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_recording_patch_makes_a_valid_daemonset_that_records_into_its_host_path(version):
    import click
    import kubernetes_validate

    from pod_stats.cli import cli

    daemonset = recording_daemonset()
    kubernetes_validate.validate(daemonset, version, strict=True)
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    serve = cli.commands["serve"]
    context = click.Context(serve)
    serve.parse_args(context, list(container["args"][1:]))
    store = context.params["record_store"]
    volumes = {volume["name"]: volume for volume in daemonset["spec"]["template"]["spec"]["volumes"]}
    writable = [
        mount
        for mount in container["volumeMounts"]
        if not mount.get("readOnly") and "hostPath" in volumes[mount["name"]]
    ]
    assert len(writable) == 1, "the recording's directory is the one writable host path"
    (mount,) = writable
    assert store.startswith(mount["mountPath"] + "/")
    assert volumes[mount["name"]]["hostPath"] == {"path": mount["mountPath"], "type": "DirectoryOrCreate"}
    assert manifests()["DaemonSet"] != daemonset and "recording" not in {v["name"] for v in pod_spec()["volumes"]}


def _env() -> dict[str, dict]:
    return {item["name"]: item for item in agent_container()["env"]}


def _envvar(parameter: str) -> str:
    """The environment variable of an option every attaching command has (pod_stats.cli)."""
    from pod_stats.cli import cli

    (option,) = [p for p in cli.commands["procs"].params if p.name == parameter]
    assert isinstance(option.envvar, str)
    return option.envvar


def test_commands_exec_ed_in_the_container_find_the_host_cgroups_and_proc():
    """`kubectl exec … -- pod-stats procs` (run, files) gets the container's environment, so the
    cgroup root comes from it; procs finds the host's /proc where it is mounted by default."""
    from pod_stats.drilldown import HOST_PROC

    assert _envvar("cgroup_root") in _env()
    mounts = {mount["mountPath"]: mount for mount in agent_container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    assert volumes[mounts[HOST_PROC]["name"]]["hostPath"]["path"] == "/proc"
    assert mounts[HOST_PROC]["readOnly"] is True


def test_the_daemonset_runs_on_every_architecture_the_image_has():
    # make image builds amd64 and arm64 as one index: no architecture is selected
    assert pod_spec()["nodeSelector"] == {"kubernetes.io/os": "linux"}
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^IMAGE_ARCHES \?= amd64 arm64$", makefile, re.M)


def test_node_name_comes_from_the_downward_api():
    env = _env()
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_probes_use_healthz():
    container = agent_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz", probe
        assert ports.get(http["port"], http["port"]) == DEFAULT_PORT, probe


def test_daemonset_runs_on_every_node():
    assert {"operator": "Exists"} in pod_spec()["tolerations"]
    resources = agent_container()["resources"]
    assert resources["requests"] and resources["limits"]


def test_service_selects_the_agents():
    service = manifests()["Service"]
    template_labels = manifests()["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= template_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": DEFAULT_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # prometheus-operator's job label is the Service name; PodStatsAgentDown expects job="pod-stats"
    assert service["metadata"]["name"] == "pod-stats"


def test_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port():
    policy = manifests()["NetworkPolicy"]
    assert policy["metadata"]["namespace"] == manifests()["DaemonSet"]["metadata"]["namespace"]
    template_labels = manifests()["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]
    assert set(selector) == {"matchLabels"} and selector["matchLabels"].items() <= template_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]  # one source: no ipBlock, no podSelector-only peer (this namespace)
    assert set(source) == {"namespaceSelector"}
    assert source["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    (port,) = agent_container()["ports"]
    assert rule["ports"] == [{"port": port["containerPort"], "protocol": port["protocol"]}]
    assert rule["ports"][0]["port"] == int(_args()["--web.listen-address"].rsplit(":", 1)[1])


def test_service_monitor_scrapes_the_service():
    (monitor,) = load_documents(DEPLOY / "servicemonitor.yaml")
    service = manifests()["Service"]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    # the agent's own namespace/pod/container target labels must not shadow the observed pod's
    assert {"action": "labeldrop", "regex": "namespace|pod|container"} in endpoint["relabelings"]
    assert not endpoint.get("honorLabels")


# -- Prometheus rules ---------------------------------------------------------------------


def test_promtool_checks_the_rules():
    run_promtool("check", "rules", str(RULES))


def test_promtool_rule_unit_tests_pass():
    run_promtool("test", "rules", str(RULES_TEST))


def test_rule_unit_tests_cover_every_alert_firing_and_quiet():
    tests = load_documents(RULES_TEST)[0]["tests"]
    fired, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts no unit test sees firing"
    assert alerts - quiet == set(), "alerts no unit test sees staying quiet"


def test_required_alerts_are_labelled_and_annotated():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name
    for name in ("PodStatsMemoryNearLimit", "PodStatsOpenErrorStorm", "PodStatsOpenRateAnomaly"):
        text = " ".join(alerts[name]["annotations"].values())
        for label in ("namespace", "pod", "container"):
            assert f"$labels.{label}" in text, (name, label)
    assert 'job="pod-stats"' in alerts["PodStatsAgentDown"]["expr"]


def test_rules_use_only_contract_metrics():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        unknown = metric_names(rule["expr"]) - CONTRACT_METRICS - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses metrics outside the contract: {unknown}"


def render_prometheus_rule_crd() -> str:
    """deploy/prometheus-rule-crd.yaml: the rule file's groups wrapped in a PrometheusRule."""
    header = "".join(line for line in RULE_CRD.read_text().splitlines(keepends=True) if line.startswith("#"))

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper, data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    Dumper.add_representer(str, represent_str)
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "pod-stats", "namespace": "pod-stats", "labels": {"app.kubernetes.io/name": "pod-stats"}},
        "spec": {"groups": rule_groups()},
    }
    return header + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=1000, allow_unicode=True)


def test_prometheus_rule_crd_matches_rule_file():
    (crd,) = load_documents(RULE_CRD)
    assert (crd["apiVersion"], crd["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert crd["spec"]["groups"] == rule_groups(), (
        "deploy/prometheus-rule-crd.yaml is out of date: run .venv/bin/python tests/test_deploy.py --write-rule-crd"
    )


# -- Grafana dashboard --------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard():
    board = dashboard()
    assert board["uid"] == "pod-stats" and board["title"]
    assert board["schemaVersion"] >= 36  # Grafana 9/10+ (timeseries panels, datasource refs by uid)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_uses_only_contract_metrics():
    used = set()
    # template variables: label_values(<selector>, <label name>)
    queries = dashboard_exprs() + [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", variable["query"]["query"])
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]
    for expr in queries:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= CONTRACT_METRICS, f"{expr!r} uses metrics outside the contract: {names - CONTRACT_METRICS}"
        used |= names
    # the panels the dashboard promises: pods' opens, errors, memory, CPU, processes, the kernel's
    # signals, throttling, pressure and block I/O; the agents
    assert {
        "pod_stats_file_opens_total",
        "pod_stats_file_open_errors_total",
        "pod_stats_file_open_errors_by_errno_total",
        "pod_stats_memory_rss_bytes",
        "pod_stats_memory_working_set_bytes",
        "pod_stats_memory_limit_bytes",
        "pod_stats_cpu_seconds_total",
        "pod_stats_processes",
        "pod_stats_process_forks_total",
        "pod_stats_process_execs_total",
        "pod_stats_network_transmit_bytes_total",
        "pod_stats_network_receive_bytes_total",
        "pod_stats_memory_oom_kills_total",
        "pod_stats_memory_high_events_total",
        "pod_stats_cpu_cfs_periods_total",
        "pod_stats_cpu_cfs_throttled_periods_total",
        "pod_stats_pod_cpu_cfs_throttled_seconds_total",
        "pod_stats_pod_cpu_pressure_some_seconds_total",
        "pod_stats_pod_memory_pressure_some_seconds_total",
        "pod_stats_pod_io_pressure_some_seconds_total",
        "pod_stats_pod_block_io_read_bytes_total",
        "pod_stats_pod_block_io_write_bytes_total",
        "pod_stats_tcp_connect_failures_total",
        "pod_stats_tcp_retransmitted_segments_total",
        "pod_stats_pod_info",
    } <= used
    assert {
        "pod_stats_sample_duration_seconds",
        "pod_stats_bpf_map_entries",
        "pod_stats_bpf_map_full_drops_total",
        "pod_stats_bpf_program_run_seconds_total",
        "up",
    } <= used


def test_dashboard_queries_are_valid_promql(tmp_path):
    substitutions = {"$__rate_interval": "5m", "$namespace": ".*", "$pod": ".*", "$node": ".*"}
    recording = []
    for index, expr in enumerate(dashboard_exprs()):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown dashboard variable in {expr!r}"
        recording.append({"record": f"dashboard:query_{index}", "expr": expr})
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    run_promtool("check", "rules", str(rule_file))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-rule-crd"]:
        RULE_CRD.write_text(render_prometheus_rule_crd())
        print(f"wrote {RULE_CRD.relative_to(ROOT)}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-rule-crd")


def test_the_image_tag_is_the_version_pyproject_gives():
    """pyproject.toml is the one place the version is written; the manifest's tag follows it."""
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert agent_container()["image"].endswith(f":{version}")
    from pod_stats import __version__

    assert __version__ == version
