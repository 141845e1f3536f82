#!/usr/bin/env python3
"""Offline checks of the storeops manifests (no cluster needed).

    k8s/check.py                 # builds base and every overlay with plain kustomize, checks them
    k8s/check.py --self-test     # also proves that broken manifests fail the check
    k8s/check.py rendered.yaml   # checks already rendered manifests

What is checked is what `kustomize build` / `kubectl apply -k` give with default settings
(no load-restrictor flag, no post-processing), as a GitOps tool applies it. First, the files
k8s/generate.py makes from dashboards/ must be what is committed. Then every rendered
object is validated against its API schema: core objects with kubernetes-validate --strict
for each Kubernetes version in K8S_VERSIONS, custom resources against the openAPIV3Schema
of their operator's CRD in k8s/crds/ (unknown fields rejected, as kubectl's strict field
validation does). Then what PRODUCT §6/§11 ask of them, checked against the sources rather
than a hand list: every environment variable a manifest sets is one src/ reads; probes and
ports agree with HTTP_ADDR/ADMIN_ADDR and the declared container ports; the worker classes
run every consumer group of src/ exactly once and KEDA watches exactly their queues;
shutdown grace covers drain and in-flight work; the CloudNativePG Cluster has
scripts/dev-env's WAL settings; the PrometheusRule and the dashboard ConfigMaps equal the
files in dashboards/. Run with the python of scripts/py-env.
"""
import copy
import functools
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import jsonschema
import kubernetes_validate.utils as kv
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import generate  # noqa: E402  (k8s/generate.py)

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
# The operators' CRDs live in the repository (k8s/crds/README.md: versions and sources), so a
# clone alone validates.
CRD_DIR = pathlib.Path(os.environ.get("STOREOPS_K8S_CRDS", HERE / "crds"))
# Supported cluster versions: the Kubernetes releases still maintained upstream or by the
# big providers' extended support, up to the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.32", "1.33", "1.34", "1.35", "1.36", "1.37")
SECRET = "storeops-secrets"
SECRET_KEYS = ("DATABASE_URL", "DATABASE_REPLICA_URLS", "AMQP_URL", "AUTH_JWT_SECRET")
# The kinds an overlay must deploy (PRODUCT §11); base has only the app's.
APP_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "ScaledObject", "TriggerAuthentication",
             "PodDisruptionBudget", "PodMonitor", "NetworkPolicy", "Job", "ConfigMap", "ServiceAccount"}
OVERLAY_KINDS = APP_KINDS | {"Cluster", "RabbitmqCluster", "PrometheusRule"}


# ---------------------------------------------------------------------------------------
# Rendering: plain kustomize, as `kubectl apply -k` and GitOps tools run it


def kustomize_command():
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return [str(beside), "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise SystemExit("check: need kubectl or kustomize (scripts/py-env installs kubectl)")


def render(path):
    """The objects `kustomize build <path>` gives with default settings (a list of dicts)."""
    cmd = kustomize_command() + [str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"check: {' '.join(cmd)} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# ---------------------------------------------------------------------------------------
# What the sources say


def _read(path):
    return (ROOT / path).read_text()


def _src_files():
    return sorted((ROOT / "src").rglob("*.rs"))


@functools.lru_cache(maxsize=None)
def config_source():
    """src/config.rs without its tests."""
    return _read("src/config.rs").split("#[cfg(test)]")[0]


@functools.lru_cache(maxsize=None)
def known_env():
    """(names, prefixes) of the environment variables the binary reads."""
    names = set(re.findall(r'"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"', config_source()))
    prefixes = set()
    for path in _src_files():
        text = path.read_text()
        names |= set(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text))
        # Variables read by libraries on the binary's behalf, recognised by the call that
        # hands them over: tracing-subscriber's EnvFilter reads RUST_LOG, the OTLP
        # exporter the standard OTEL_* variables.
        if re.search(r"EnvFilter::(try_)?from_default_env", text):
            names.add("RUST_LOG")
        if "opentelemetry_otlp::" in text:
            prefixes.add("OTEL_")
    if len(names) < 10:
        raise SystemExit(f"check: found only {sorted(names)} in src/config.rs; has the parsing rotted?")
    return frozenset(names), frozenset(prefixes)


@functools.lru_cache(maxsize=None)
def config_defaults():
    """NAME -> default, for variables parsed with a literal number or bool default."""
    found = re.findall(r'"([A-Z][A-Z0-9_]+)",\s*([0-9][0-9_]*|true|false)(?:u8|u16|u32|u64|usize)?\b',
                       config_source())
    return {name: (value == "true" if value in ("true", "false") else int(value.replace("_", "")))
            for name, value in found}


@functools.lru_cache(maxsize=None)
def topology_prefix_default():
    m = re.search(r'"AMQP_TOPOLOGY_PREFIX"\)\s*\.unwrap_or_else\(\|\|\s*"([^"]+)"', config_source())
    if not m:
        raise SystemExit("check: cannot find AMQP_TOPOLOGY_PREFIX's default in src/config.rs")
    return m.group(1)


@functools.lru_cache(maxsize=None)
def consumer_groups():
    """Every consumer group a module subscribes (registry.subscribe::<Event>(GROUP, ...) or
    registry.subscribe_raw(GROUP, ...))."""
    groups = set()
    for path in _src_files():
        text = path.read_text()
        consts = dict(re.findall(r'const ([A-Z_][A-Z0-9_]*): &str = "([^"]+)";', text))
        for arg in re.findall(r'\.subscribe(?:_raw|::<[^>]+>)?\(\s*("[^"]+"|[A-Z_][A-Z0-9_]*)\s*,', text):
            if arg.startswith('"'):
                groups.add(arg.strip('"'))
            elif arg in consts:
                groups.add(consts[arg])
            else:
                raise SystemExit(f"check: {path.relative_to(ROOT)} subscribes group {arg}, not a const of that file")
    if not groups:
        raise SystemExit("check: found no registry.subscribe(...) in src/")
    return frozenset(groups)


@functools.lru_cache(maxsize=None)
def dev_env_pg_settings():
    """The WAL/checkpoint/standby settings scripts/dev-env gives PostgreSQL."""
    wanted = ("max_wal_size", "min_wal_size", "checkpoint_timeout", "hot_standby_feedback",
              "max_slot_wal_keep_size")
    settings = dict(re.findall(r"^(%s) = '?([^'\n]+?)'?$" % "|".join(wanted), _read("scripts/dev-env"), re.M))
    if set(settings) != set(wanted):
        raise SystemExit(f"check: scripts/dev-env sets {sorted(settings)}, expected {sorted(wanted)}")
    return settings


def dashboard_files():
    return {p.name: p.read_text() for p in sorted((ROOT / "dashboards").glob("*.json"))}


def alert_groups():
    return yaml.safe_load(_read("dashboards/alerts.yaml"))["groups"]


# ---------------------------------------------------------------------------------------
# The rules' conventions (dashboards/alerts.yaml's header): namespace kept, severities,
# runbooks, tests


SEVERITIES = ("critical", "warning", "info")
AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)"
                         r"\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(")


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown text (lower case, punctuation
    dropped, spaces to hyphens, repeats numbered)."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def rule_problems(groups, tests, runbooks):
    """Problems of the rules `groups` against the conventions, their promtool `tests`
    (alerts_test.yaml, parsed) and the runbooks' Markdown."""
    problems = []
    anchors = github_anchors(runbooks)
    firing = {case["alertname"] for t in tests.get("tests", []) for case in t.get("alert_rule_test", [])
              if case.get("exp_alerts")}
    for group in groups:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            for m in AGGREGATION.finditer(rule["expr"]):
                op, how, labels = m.group(1), m.group(2), [x.strip() for x in (m.group(3) or "").split(",")]
                if how is None:
                    problems.append(f"{name}: {op}(...) without `by`: it aggregates namespace away")
                elif (how == "by") != ("namespace" in labels):
                    problems.append(f"{name}: {op} {how} ({m.group(3)}) drops namespace")
            if "alert" not in rule:
                continue
            if rule.get("labels", {}).get("severity") not in SEVERITIES:
                problems.append(f"{name}: severity {rule.get('labels', {}).get('severity')!r}, want one of {SEVERITIES}")
            url = rule.get("annotations", {}).get("runbook_url", "")
            if not url.startswith("docs/RUNBOOKS.md#") or url.split("#", 1)[1] not in anchors:
                problems.append(f"{name}: runbook_url {url!r} is not a heading of docs/RUNBOOKS.md")
            if name not in firing:
                problems.append(f"{name}: no case in dashboards/alerts_test.yaml where it fires")
    return problems


def alert_rule_problems():
    tests = yaml.safe_load(_read("dashboards/alerts_test.yaml"))
    runbooks = (ROOT / "docs" / "RUNBOOKS.md").read_text() if (ROOT / "docs" / "RUNBOOKS.md").is_file() else ""
    return rule_problems(alert_groups(), tests, runbooks)


# ---------------------------------------------------------------------------------------
# Schemas


@functools.lru_cache(maxsize=None)
def _schema_file(filename, desired_version):
    return _uncached_schema_contents(filename, desired_version)


# kubernetes-validate re-reads (and re-parses) its large definitions file for every object;
# the contents never change, so read each file once.
_uncached_schema_contents = kv.schema_contents
kv.schema_contents = _schema_file


def _strict(node):
    """A CRD schema as the API server applies it with strict field validation: an object
    with declared properties accepts no other field (unless it says it preserves unknown
    fields), and `nullable` allows null."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) if k in ("properties", "items", "additionalProperties", "allOf",
                                   "anyOf", "oneOf", "not") else v for k, v in node.items()}
    if "properties" in node:
        node["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


@functools.lru_cache(maxsize=None)
def crd_schemas(directory=CRD_DIR):
    """(apiVersion, kind) -> a validator, from every CRD in `directory`."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise SystemExit(f"check: CRD folder {directory} is missing (see k8s/crds/README.md); "
                         "custom resources cannot be validated")
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = _strict(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    if not schemas:
        raise SystemExit(f"check: no CustomResourceDefinition in {directory}")
    return schemas


def schema_errors(doc, crds):
    """Schema violations of one object, for every supported version."""
    where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
    validator = crds.get((doc.get("apiVersion"), doc.get("kind")))
    if validator is not None:
        return [f"{where}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message} (CRD schema)"
                for e in validator.iter_errors(doc)]
    errors = []
    for version in K8S_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            return [f"{where}: {doc.get('apiVersion')} is neither a core API of Kubernetes {version} "
                    f"nor a custom resource with a CRD in {CRD_DIR}"]
        except kv.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message} "
                          f"(kubernetes-validate --strict, Kubernetes {version})")
    return errors


# ---------------------------------------------------------------------------------------
# The checks


def _by_kind(docs):
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    return kinds


def _matches(selector, labels):
    return bool(selector) and selector.items() <= labels.items()


def _env(container, configmaps):
    """The container's environment as the kubelet builds it (envFrom, then env wins);
    Secret keys are unknown here."""
    env = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        if name:
            env.update(configmaps.get(name, {}).get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def _seconds(env, name):
    value = env.get(name)
    return int(value) if value not in (None, "") else config_defaults()[name]


def _flag(env, name):
    value = env.get(name)
    return value.strip().lower() == "true" if value not in (None, "") else config_defaults()[name]


def _port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def check(name, docs, crds=None, overlay=None):
    """Problems of one rendered set of objects (an empty list when all is well)."""
    crds = crd_schemas() if crds is None else crds
    overlay = ("overlays" in name) if overlay is None else overlay
    errors = []
    err = errors.append
    for d in docs:
        errors += schema_errors(d, crds)
    kinds = _by_kind(docs)
    for kind in sorted((OVERLAY_KINDS if overlay else APP_KINDS) - set(kinds)):
        err(f"no {kind} in the rendered manifests")
    if any(k in kinds for k in ("Secret",)):
        err(f"Secrets {sorted(kinds['Secret'])} are defined in the manifests; they are created per environment")

    configmaps = kinds.get("ConfigMap", {})
    config_names = [n for n in configmaps if n.startswith("storeops-config")]
    if len(config_names) != 1:
        err(f"want one ConfigMap storeops-config, have {config_names}")
    for cm_name in config_names:
        for key in SECRET_KEYS:
            if key in configmaps[cm_name].get("data", {}):
                err(f"ConfigMap {cm_name} holds {key}, which belongs in {SECRET}")

    names, prefixes = known_env()
    deployments = kinds.get("Deployment", {})
    workloads = [("Deployment", n, d["spec"]["template"]) for n, d in deployments.items()]
    workloads += [("Job", n, j["spec"]["template"]) for n, j in kinds.get("Job", {}).items()]
    images = set()
    for kind, wname, template in workloads:
        where = f"{kind} {wname}"
        spec = template["spec"]
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            err(f"{where}: pod securityContext.runAsNonRoot is not true")
        if spec.get("automountServiceAccountToken") is not False:
            err(f"{where}: automountServiceAccountToken should be false")
        for c in spec["containers"]:
            images.add(c["image"])
            if c["image"].endswith(":latest") or ":" not in c["image"].rsplit("/", 1)[-1] and "@" not in c["image"]:
                if overlay:
                    err(f"{where}: image {c['image']} is not pinned")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                err(f"{where}: capabilities.drop is not [ALL]")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
                err(f"{where}: missing cpu/memory requests")
            if not res.get("limits", {}).get("memory"):
                err(f"{where}: missing memory limit")
            refs = c.get("envFrom", [])
            if not any(e.get("secretRef", {}).get("name") == SECRET for e in refs):
                err(f"{where}: does not take env from Secret {SECRET}")
            for e in refs:
                ref = e.get("configMapRef", {}).get("name")
                if ref and ref not in configmaps:
                    err(f"{where}: envFrom ConfigMap {ref}, which the manifests do not define")
            env = _env(c, configmaps)
            for var in sorted(env):
                if var not in names and not var.startswith(tuple(prefixes)):
                    err(f"{where}: sets {var}, which the binary does not read (src/config.rs)")
            if kind == "Deployment":
                errors += _check_pod_ports(where, c, env)
    if len(images) > 1:
        err(f"workloads run different images: {sorted(images)}")
    # Production runs exactly what a release pushed (scripts/release sets the digest).
    if name.endswith("production") and not all(re.search(r"@sha256:[0-9a-f]{64}$", i) for i in images):
        err(f"production images {sorted(images)} are not pinned by digest (scripts/release)")
    if not any(j["spec"]["template"]["spec"]["containers"][0].get("args") == ["migrate", "up"]
               for j in kinds.get("Job", {}).values()):
        err("no Job running `migrate up`")

    errors += _check_deployments(kinds, configmaps)
    errors += _check_workers(kinds, configmaps)
    errors += _check_network(kinds)
    if "Cluster" in kinds or "RabbitmqCluster" in kinds:
        errors += _check_platform(kinds)
        errors += _check_connection_budget(kinds, configmaps)
    if "PrometheusRule" in kinds or overlay:
        errors += _check_monitoring(kinds)
    if name.endswith("production") or "ObjectStore" in kinds or "ScheduledBackup" in kinds:
        errors += _check_backups(kinds)
        if not errors:
            # The runbook's restore manifest (k8s/restore.py) is a valid Cluster for this overlay.
            import restore  # noqa: E402  (k8s/restore.py imports this module)
            restored = restore.restore_cluster(docs, "2026-11-25T09:41:00Z")
            errors += [f"k8s/restore.py's Cluster: {e}" for e in schema_errors(restored, crds)]
    return errors


def _check_pod_ports(where, c, env):
    errors = []
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    admin = _port_of(env.get("ADMIN_ADDR") or "127.0.0.1:9464")
    if ports.get("admin") != admin:
        errors.append(f"{where}: container port `admin` is {ports.get('admin')}, ADMIN_ADDR listens on {admin}")
    if c.get("args", [None])[0] in ("api", "all"):
        http = _port_of(env.get("HTTP_ADDR") or "127.0.0.1:8080")
        if ports.get("http") != http:
            errors.append(f"{where}: container port `http` is {ports.get('http')}, HTTP_ADDR listens on {http}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = c.get(probe, {}).get("httpGet")
        if not get:
            errors.append(f"{where}: no {probe} (GET {path} on the admin port)")
            continue
        port = get.get("port")
        declared = port in ports or port in ports.values()
        number = ports.get(port, port)
        if not declared:
            errors.append(f"{where}: {probe} on port {port!r}, which the container does not declare")
        elif number != admin or get.get("path") != path:
            errors.append(f"{where}: {probe} is GET {get.get('path')} on port {port!r}, want GET {path} "
                          f"on the admin port ({admin})")
    return errors


def _check_deployments(kinds, configmaps):
    errors = []
    err = errors.append
    deployments = kinds.get("Deployment", {})
    pdbs = kinds.get("PodDisruptionBudget", {}).values()
    monitors = kinds.get("PodMonitor", {}).values()
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in kinds.get("HorizontalPodAutoscaler", {}).values()
            if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in kinds.get("ScaledObject", {}).values()}
    roles = {}
    for dname, d in deployments.items():
        where = f"Deployment {dname}"
        spec = d["spec"]["template"]["spec"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        (c,) = spec["containers"]
        role = c.get("args", [None])[0]
        roles.setdefault(role, []).append(dname)
        env = _env(c, configmaps)
        drain, grace = _seconds(env, "SHUTDOWN_DRAIN_SECONDS"), _seconds(env, "SHUTDOWN_GRACE_SECONDS")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps <= drain + grace:
            err(f"{where}: terminationGracePeriodSeconds {tgps} <= SHUTDOWN_DRAIN_SECONDS {drain} + "
                f"SHUTDOWN_GRACE_SECONDS {grace}: the kubelet would kill it mid-shutdown")
        if role == "api" and drain < 1:
            err(f"{where}: SHUTDOWN_DRAIN_SECONDS is {drain}; the api needs a drain while endpoints drop it")
        autoscaled = dname in hpas or dname in scaled
        if autoscaled and "replicas" in d["spec"]:
            err(f"{where}: sets replicas although an autoscaler owns the count (each apply would reset it)")
        if not autoscaled and d["spec"].get("replicas", 1) < 2:
            err(f"{where}: fewer than 2 replicas")
        if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in spec.get("topologySpreadConstraints", [])):
            err(f"{where}: no topologySpreadConstraint across kubernetes.io/hostname")
        # maxUnavailable 1: a drain takes one pod at a time whatever the autoscaler runs (a
        # minAvailable would let it take all but that many at the peak).
        mine_pdbs = [p for p in pdbs if _matches(p["spec"]["selector"].get("matchLabels"), labels)]
        if len(mine_pdbs) != 1:
            err(f"{where}: {len(mine_pdbs)} PodDisruptionBudgets select its pods, want one")
        for p in mine_pdbs:
            if "minAvailable" in p["spec"] or p["spec"].get("maxUnavailable") != 1:
                err(f"{where}: PodDisruptionBudget {p['metadata']['name']} has minAvailable "
                    f"{p['spec'].get('minAvailable')} / maxUnavailable {p['spec'].get('maxUnavailable')}: "
                    "want maxUnavailable 1 and no minAvailable")
        mine = [m for m in monitors if _matches(m["spec"]["selector"].get("matchLabels"), labels)]
        if not any(e.get("port") == "admin" and e.get("path", "/metrics") == "/metrics"
                   for m in mine for e in m["spec"].get("podMetricsEndpoints", [])):
            err(f"{where}: no PodMonitor scraping /metrics on its admin port")
        for m in mine:
            others = [o for o, od in deployments.items() if o != dname
                      and _matches(m["spec"]["selector"].get("matchLabels"), od["spec"]["template"]["metadata"]["labels"])]
            if others:
                err(f"PodMonitor {m['metadata']['name']} selects {dname} and {others}: one scrape job per Deployment")
    if roles.get("api") != ["storeops-api"] or roles.get("scheduler") != ["storeops-scheduler"]:
        err(f"Deployments by role {roles}: want storeops-api (api) and storeops-scheduler (scheduler)")
    if not roles.get("worker"):
        err("no worker Deployment")
    if set(roles) - {"api", "worker", "scheduler"}:
        err(f"Deployments with unexpected commands: {sorted(set(roles) - {'api', 'worker', 'scheduler'})}")
    hpa = hpas.get("storeops-api")
    if hpa is None:
        err("no HorizontalPodAutoscaler for storeops-api")
    else:
        s = hpa["spec"]
        if s.get("minReplicas", 1) < 2 or s["maxReplicas"] <= s.get("minReplicas", 1):
            err(f"HPA storeops-api: min {s.get('minReplicas')} max {s['maxReplicas']}: want 2 <= min < max")
        if not any(m.get("resource", {}).get("name") == "cpu" for m in s.get("metrics", [])):
            err("HPA storeops-api does not scale on CPU")
        if s.get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 0) < 60:
            err("HPA storeops-api: scale-down stabilisation window under 60 s")
    return errors


def _worker_queues(container):
    args = container.get("args", [])
    for i, a in enumerate(args):
        if a == "--queues" and i + 1 < len(args):
            return [q.strip() for q in args[i + 1].split(",") if q.strip()]
        if a.startswith("--queues="):
            return [q.strip() for q in a.split("=", 1)[1].split(",") if q.strip()]
    return []


def _check_workers(kinds, configmaps):
    errors = []
    err = errors.append
    groups = consumer_groups()
    auths = kinds.get("TriggerAuthentication", {})
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in kinds.get("ScaledObject", {}).values()}
    seen = {}
    relays = []
    for dname, d in kinds.get("Deployment", {}).items():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        if c.get("args", [None])[0] != "worker":
            continue
        where = f"Deployment {dname}"
        queues = _worker_queues(c)
        if not queues:
            err(f"{where}: no --queues; every worker class names its consumer groups")
        for q in queues:
            if q not in groups:
                err(f"{where}: --queues names {q!r}, not a consumer group of src/ ({sorted(groups)})")
            seen.setdefault(q, []).append(dname)
        env = _env(c, configmaps)
        if _flag(env, "WORKER_RUN_RELAY"):
            relays.append(dname)
        grace, timeout = _seconds(env, "SHUTDOWN_GRACE_SECONDS"), _seconds(env, "WORKER_MESSAGE_TIMEOUT_SECONDS")
        if grace < timeout:
            err(f"{where}: SHUTDOWN_GRACE_SECONDS {grace} < WORKER_MESSAGE_TIMEOUT_SECONDS {timeout}: "
                "a scale-down would cut messages in hand")
        so = scaled.get(dname)
        if so is None:
            err(f"{where}: no KEDA ScaledObject")
            continue
        s = so["spec"]
        prefix = env.get("AMQP_TOPOLOGY_PREFIX") or topology_prefix_default()
        watched = set()
        for t in s.get("triggers", []):
            if t.get("type") != "rabbitmq":
                err(f"ScaledObject {so['metadata']['name']}: trigger of type {t.get('type')}, want rabbitmq")
                continue
            watched.add(t.get("metadata", {}).get("queueName"))
            if t.get("metadata", {}).get("mode") != "QueueLength":
                err(f"ScaledObject {so['metadata']['name']}: trigger mode is not QueueLength")
            auth = auths.get(t.get("authenticationRef", {}).get("name"))
            if auth is None or not any(r.get("name") == SECRET and r.get("key") == "AMQP_URL"
                                       and r.get("parameter") == "host" for r in auth["spec"].get("secretTargetRef", [])):
                err(f"ScaledObject {so['metadata']['name']}: trigger does not authenticate with "
                    f"{SECRET}/AMQP_URL through a TriggerAuthentication")
        want = {f"{prefix}.{q}" for q in queues}
        if watched != want:
            err(f"ScaledObject {so['metadata']['name']}: watches {sorted(watched)}, the class consumes {sorted(want)}")
        lo, hi = s.get("minReplicaCount", 0), s.get("maxReplicaCount", 100)
        if lo < 2 or hi < lo:
            err(f"ScaledObject {so['metadata']['name']}: min {lo} max {hi}: want 2 <= min <= max "
                "(never scale a class to zero; with 2 pods a drain (PDB maxUnavailable 1) leaves one consuming)")
        down = s.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown", {})
        if down.get("stabilizationWindowSeconds", 0) < 60:
            err(f"ScaledObject {so['metadata']['name']}: scale-down stabilisation window under 60 s")
    for group in sorted(groups):
        if len(seen.get(group, [])) != 1:
            err(f"consumer group {group!r} runs in {seen.get(group, [])}: want exactly one worker class")
    if seen and not relays:
        err("no worker class runs the outbox relay (WORKER_RUN_RELAY)")
    return errors


# ---------------------------------------------------------------------------------------
# Backups (PRODUCT §11): WAL archive + daily base backups to an object store, 30 days.

BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io"
RETENTION = "30d"


def _check_backups(kinds):
    errors = []
    err = errors.append
    stores = kinds.get("ObjectStore", {})
    clusters = kinds.get("Cluster", {})
    if not stores:
        err("no ObjectStore (Barman Cloud Plugin): the database has no backups")
    for sname, store in stores.items():
        spec = store["spec"]
        conf = spec.get("configuration", {})
        if spec.get("retentionPolicy") != RETENTION:
            err(f"ObjectStore {sname}: retentionPolicy {spec.get('retentionPolicy')!r}, want {RETENTION!r}")
        for part in ("wal", "data"):
            if not conf.get(part, {}).get("compression"):
                err(f"ObjectStore {sname}: {part} is not compressed")
        creds = [conf.get(k) for k in ("s3Credentials", "azureCredentials", "googleCredentials") if conf.get(k)]
        if len(creds) != 1:
            err(f"ObjectStore {sname}: want one set of credentials (a Secret reference or the pod's identity)")
    for cname, cluster in clusters.items():
        archivers = [pl for pl in cluster["spec"].get("plugins", [])
                     if pl.get("name") == BARMAN_PLUGIN and pl.get("isWALArchiver") and pl.get("enabled", True)]
        if not archivers:
            err(f"Cluster {cname}: no WAL archive (spec.plugins {BARMAN_PLUGIN} with isWALArchiver: true)")
        for pl in archivers:
            if pl.get("parameters", {}).get("barmanObjectName") not in stores:
                err(f"Cluster {cname}: archives to ObjectStore {pl.get('parameters', {}).get('barmanObjectName')!r}, "
                    "which the manifests do not define")
        daily = [b for b in kinds.get("ScheduledBackup", {}).values()
                 if b["spec"].get("cluster", {}).get("name") == cname]
        if not daily:
            err(f"Cluster {cname}: no ScheduledBackup")
        for b in daily:
            bs = b["spec"]
            fields = bs.get("schedule", "").split()
            if len(fields) != 6 or fields[3:] != ["*", "*", "*"] or not all(f.isdigit() for f in fields[:3]):
                err(f"ScheduledBackup {b['metadata']['name']}: schedule {bs.get('schedule')!r} is not once a day "
                    "(six fields, seconds first)")
            if bs.get("method") != "plugin" or bs.get("pluginConfiguration", {}).get("name") != BARMAN_PLUGIN:
                err(f"ScheduledBackup {b['metadata']['name']}: not method plugin through {BARMAN_PLUGIN}")
    return errors


# ---------------------------------------------------------------------------------------
# The connection budget: at every autoscaler's maximum, with a rollout's surge pod on top,
# the pods' pools stay under the database's max_connections with headroom (PRODUCT §11).

# PostgreSQL's default superuser_reserved_connections, which CloudNativePG keeps: slots
# only superusers may take.
SUPERUSER_RESERVED_DEFAULT = 3
# CloudNativePG's own sessions on each instance (instance manager, metrics exporter,
# backups); they are superuser sessions that take ordinary slots first.
OPERATOR_CONNECTIONS = 10
# Kept free for people (psql, `kubectl cnpg psql`), a `storeops dlq`/`prune` run, and pods
# still terminating while their replacements open pools during a rollout.
HEADROOM = 0.10


def _pods_at_most(deployment, hpas, scaled):
    """(pods, why): the Deployment's pods at its autoscaler's maximum plus its rollout surge."""
    name = deployment["metadata"]["name"]
    if name in hpas:
        pods, why = hpas[name]["spec"]["maxReplicas"], "HPA max"
    elif name in scaled:
        # KEDA's default maxReplicaCount is 100.
        pods, why = scaled[name]["spec"].get("maxReplicaCount", 100), "ScaledObject max"
    else:
        pods, why = deployment["spec"].get("replicas", 1), "replicas"
    strategy = deployment["spec"].get("strategy", {})
    surge = 0
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        value = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
        surge = -(-pods * int(value[:-1]) // 100) if isinstance(value, str) else int(value)
    return pods + surge, f"{why} {pods} + surge {surge}"


def _int_env(env, name):
    value = env.get(name)
    return int(value) if value not in (None, "") else config_defaults()[name]


def connection_budget(kinds, configmaps):
    """What every pool may open at once against what the Cluster allows, as a dict:
    primary/replica: [(workload, pods, per pod, subtotal, how)], usable, max_connections."""
    (pg,) = kinds["Cluster"].values()
    params = pg["spec"].get("postgresql", {}).get("parameters", {})
    max_connections = int(params.get("max_connections", 100))
    reserved = int(params.get("superuser_reserved_connections", SUPERUSER_RESERVED_DEFAULT)) + \
        int(params.get("reserved_connections", 0))
    usable = max_connections - reserved - OPERATOR_CONNECTIONS - -(-max_connections * int(HEADROOM * 100) // 100)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in kinds.get("HorizontalPodAutoscaler", {}).values()}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in kinds.get("ScaledObject", {}).values()}
    primary, replica = [], []
    for dname, d in sorted(kinds.get("Deployment", {}).items()):
        (c,) = d["spec"]["template"]["spec"]["containers"]
        env = _env(c, configmaps)
        pods, how = _pods_at_most(d, hpas, scaled)
        pool = _int_env(env, "DATABASE_POOL_MAX")
        per_pod, what = pool, f"DATABASE_POOL_MAX {pool}"
        if c.get("args", [None])[0] in ("api", "all"):
            # The reporting pools: one on the primary (reports fall back to it when no
            # replica is fresh), one per replica URL (storeops-db-ro: one).
            reports = _int_env(env, "REPORT_POOL_MAX")
            per_pod, what = pool + reports, f"{what} + REPORT_POOL_MAX {reports}"
            replica.append((f"Deployment {dname}", pods, reports, pods * reports, f"{how}; REPORT_POOL_MAX {reports}"))
        primary.append((f"Deployment {dname}", pods, per_pod, pods * per_pod, f"{how}; {what}"))
    for jname, j in sorted(kinds.get("Job", {}).items()):
        (c,) = j["spec"]["template"]["spec"]["containers"]
        pool = _int_env(_env(c, configmaps), "DATABASE_POOL_MAX")
        pods = j["spec"].get("parallelism", 1)
        primary.append((f"Job {jname}", pods, pool, pods * pool, f"parallelism {pods}; DATABASE_POOL_MAX {pool}"))
    return {"primary": primary, "replica": replica, "usable": usable, "max_connections": max_connections,
            "reserved": reserved}


def budget_summary(kinds, configmaps):
    b = connection_budget(kinds, configmaps)
    used = sum(row[3] for row in b["primary"])
    on_replica = sum(row[3] for row in b["replica"])
    return (f"connections at every autoscaler's maximum: primary {used}, a replica {on_replica}, of "
            f"{b['usable']} usable (max_connections {b['max_connections']} - {b['reserved']} reserved - "
            f"{OPERATOR_CONNECTIONS} operator - {int(HEADROOM * 100)}% headroom)")


def _check_connection_budget(kinds, configmaps):
    errors = []
    if len(kinds.get("Cluster", {})) != 1:
        return errors
    b = connection_budget(kinds, configmaps)
    for side in ("primary", "replica"):
        used = sum(row[3] for row in b[side])
        if used > b["usable"]:
            detail = "; ".join(f"{w}: {pods} x {per} = {sub} ({how})" for w, pods, per, sub, how in b[side])
            errors.append(f"connections to the {side} at every autoscaler's maximum: {used} > {b['usable']} usable "
                          f"(max_connections {b['max_connections']} - {b['reserved']} reserved - "
                          f"{OPERATOR_CONNECTIONS} operator - {int(HEADROOM * 100)}% headroom): {detail}. "
                          "Lower the pods' pools (DATABASE_POOL_MAX, REPORT_POOL_MAX), the autoscalers' "
                          "maxima, or raise max_connections (k8s/README.md, connection budget)")
    # A worker handles each message in a transaction of its own and the relay holds a LISTEN
    # connection and polls: a smaller pool makes handlers wait for connections.
    for dname, d in kinds.get("Deployment", {}).items():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        args = c.get("args", [])
        if not args or args[0] != "worker" or "--concurrency" not in args:
            continue
        env = _env(c, configmaps)
        need = int(args[args.index("--concurrency") + 1]) + (2 if _flag(env, "WORKER_RUN_RELAY") else 0)
        if _int_env(env, "DATABASE_POOL_MAX") < need:
            errors.append(f"Deployment {dname}: DATABASE_POOL_MAX {_int_env(env, 'DATABASE_POOL_MAX')} < "
                          f"{need} (--concurrency, + 2 for the outbox relay): handlers would wait for connections")
    return errors


def _check_network(kinds):
    errors = []
    api = kinds.get("Deployment", {}).get("storeops-api", {}).get("spec", {}).get("template", {})
    api_labels = api.get("metadata", {}).get("labels", {})
    services = kinds.get("Service", {}).values()
    if not any(_matches(s["spec"].get("selector"), api_labels)
               and any(p.get("targetPort") in ("http", 8080) for p in s["spec"]["ports"]) for s in services):
        errors.append("no Service selecting the api pods on the http port")
    for s in services:
        if any(p.get("targetPort") in ("admin", 9464) for p in s["spec"]["ports"]):
            errors.append(f"Service {s['metadata']['name']} exposes the admin port")
    rules = [r for p in kinds.get("NetworkPolicy", {}).values() for r in p["spec"].get("ingress", [])
             if any(port.get("port") in (9464, "admin") for port in r.get("ports", []))]
    if not rules:
        errors.append("no NetworkPolicy rule for the admin port")
    if any(not r.get("from") for r in rules):
        errors.append("a NetworkPolicy opens the admin port to everyone")
    return errors


def _check_platform(kinds):
    errors = []
    err = errors.append
    clusters = list(kinds.get("Cluster", {}).values())
    brokers = list(kinds.get("RabbitmqCluster", {}).values())
    if len(clusters) != 1 or len(brokers) != 1:
        return [f"want one CloudNativePG Cluster and one RabbitmqCluster, have {len(clusters)} and {len(brokers)}"]
    (pg,), (mq,) = clusters, brokers
    s = pg["spec"]
    if s.get("instances", 1) < 2:
        err(f"Cluster {pg['metadata']['name']}: {s.get('instances', 1)} instance(s); reports need a replica (-ro)")
    params = s.get("postgresql", {}).get("parameters", {})
    for key, want in dev_env_pg_settings().items():
        if str(params.get(key)).lower() != want.lower():
            err(f"Cluster {pg['metadata']['name']}: {key} = {params.get(key)!r}, scripts/dev-env uses {want!r}")
    if params.get("wal_compression") not in ("lz4", "zstd", "on"):
        err(f"Cluster {pg['metadata']['name']}: wal_compression is {params.get('wal_compression')!r}")
    if not any(r.get("name") == "storeops_analyst" and r.get("login") is False and r.get("ensure", "present") == "present"
               for r in s.get("managed", {}).get("roles", [])):
        err(f"Cluster {pg['metadata']['name']}: no managed NOLOGIN role storeops_analyst (docs/ANALYTICS.md)")
    if s.get("bootstrap", {}).get("initdb", {}).get("database") != "storeops":
        err(f"Cluster {pg['metadata']['name']}: bootstrap.initdb.database is not storeops")
    if not s.get("affinity", {}).get("enablePodAntiAffinity", True) or \
            s.get("affinity", {}).get("podAntiAffinityType") != "required":
        err(f"Cluster {pg['metadata']['name']}: instances are not required to be on different nodes")
    if not s.get("resources", {}).get("requests") or not s.get("storage", {}).get("size"):
        err(f"Cluster {pg['metadata']['name']}: no resources or storage size")
    m = mq["spec"]
    if m.get("replicas") != 3:
        err(f"RabbitmqCluster {mq['metadata']['name']}: {m.get('replicas')} nodes, want 3")
    if not re.search(r"^\s*default_queue_type\s*=\s*quorum\s*$", m.get("rabbitmq", {}).get("additionalConfig", ""), re.M):
        err(f"RabbitmqCluster {mq['metadata']['name']}: default_queue_type is not quorum")
    anti = m.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in anti):
        err(f"RabbitmqCluster {mq['metadata']['name']}: no required anti-affinity across nodes")
    if not m.get("resources", {}).get("requests"):
        err(f"RabbitmqCluster {mq['metadata']['name']}: no resource requests")
    return errors


def _check_monitoring(kinds):
    errors = []
    rules = list(kinds.get("PrometheusRule", {}).values())
    if len(rules) != 1:
        errors.append(f"want one PrometheusRule, have {len(rules)}")
    elif rules[0]["spec"].get("groups") != alert_groups():
        errors.append(f"PrometheusRule {rules[0]['metadata']['name']}: spec.groups differ from dashboards/alerts.yaml")
    shipped = {}
    for cm in kinds.get("ConfigMap", {}).values():
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            for key, text in cm.get("data", {}).items():
                shipped[key] = text
    files = dashboard_files()
    for missing in sorted(set(files) - set(shipped)):
        errors.append(f"dashboards/{missing} is in no dashboard ConfigMap: add it to k8s/monitoring/kustomization.yaml")
    for extra in sorted(set(shipped) - set(files)):
        errors.append(f"a dashboard ConfigMap ships {extra}, which is not a file of dashboards/")
    for key in sorted(set(files) & set(shipped)):
        if shipped[key] != files[key]:
            errors.append(f"the dashboard ConfigMap's {key} differs from dashboards/{key}")
    return errors


# ---------------------------------------------------------------------------------------
# Self-test: broken manifests must fail


def _container(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)["spec"]["template"]["spec"]["containers"][0]


def _spec(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))["spec"]


MUTATIONS = [
    ("an unknown field in a Deployment's probe",
     lambda docs: _container(docs, "Deployment", "storeops-api")["readinessProbe"]["httpGet"].update(portt=9464),
     "kubernetes-validate --strict"),
    ("a probe on a port the container does not declare",
     lambda docs: _container(docs, "Deployment", "storeops-worker-ingest")["readinessProbe"]["httpGet"].update(port="http"),
     "which the container does not declare"),
    ("a probe on the wrong port (the api's http port)",
     lambda docs: _container(docs, "Deployment", "storeops-api")["livenessProbe"]["httpGet"].update(port="http"),
     "want GET /livez on the admin port"),
    ("an unknown field in a KEDA ScaledObject",
     lambda docs: _spec(docs, "ScaledObject", "storeops-worker-general").update(minReplicas=3),
     "(CRD schema)"),
    ("an unknown field in the CloudNativePG Cluster",
     lambda docs: _spec(docs, "Cluster").update(instancez=3),
     "(CRD schema)"),
    ("a wrong type in the RabbitmqCluster",
     lambda docs: _spec(docs, "RabbitmqCluster").update(replicas="three"),
     "(CRD schema)"),
    ("an environment variable the binary does not read",
     lambda docs: _container(docs, "Deployment", "storeops-api").setdefault("env", []).append(
         {"name": "DATABASE_POOL_SIZE", "value": "5"}),
     "which the binary does not read"),
    ("KEDA watching a queue the class does not consume",
     lambda docs: _spec(docs, "ScaledObject", "storeops-worker-ingest")["triggers"][0]["metadata"].update(
         queueName="storeops.webhooks"),
     "the class consumes"),
    ("a consumer group no worker class runs",
     lambda docs: _container(docs, "Deployment", "storeops-worker-general")["args"].__setitem__(2, "campaigns,webhooks"),
     "want exactly one worker class"),
    ("a worker grace period shorter than a message",
     lambda docs: _container(docs, "Deployment", "storeops-worker-ingest")["env"].append(
         {"name": "WORKER_MESSAGE_TIMEOUT_SECONDS", "value": "600"}),
     "a scale-down would cut messages in hand"),
    ("a PrometheusRule that is not dashboards/alerts.yaml",
     lambda docs: _spec(docs, "PrometheusRule")["groups"].pop(),
     "differ from dashboards/alerts.yaml"),
    ("a dashboard ConfigMap that is not the file",
     lambda docs: next(d for d in docs if d["kind"] == "ConfigMap"
                       and d["metadata"].get("labels", {}).get("grafana_dashboard")
                       )["data"].update({"api.json": "{}"}),
     "differs from dashboards/"),
    ("an api PodDisruptionBudget by minAvailable (a drain may take all but one pod)",
     lambda docs: _spec(docs, "PodDisruptionBudget", "storeops-api").update(minAvailable=1, maxUnavailable=None),
     "want maxUnavailable 1 and no minAvailable"),
    ("the api's HPA maximum raised past the connection budget",
     lambda docs: _spec(docs, "HorizontalPodAutoscaler", "storeops-api").update(maxReplicas=60),
     "connections to the primary at every autoscaler's maximum"),
    ("the per-Deployment pools removed (every pod at the binary's default DATABASE_POOL_MAX 20)",
     lambda docs: [c["env"].__setitem__(slice(None), [e for e in c.get("env", []) if e["name"] != "DATABASE_POOL_MAX"])
                   for d in docs if d["kind"] in ("Deployment", "Job")
                   for c in d["spec"]["template"]["spec"]["containers"] if "env" in c],
     "connections to the primary at every autoscaler's maximum"),
    ("a worker pool smaller than its concurrency",
     lambda docs: [e.update(value="4") for e in _container(docs, "Deployment", "storeops-worker-general")["env"]
                   if e["name"] == "DATABASE_POOL_MAX"],
     "handlers would wait for connections"),
    ("production without a WAL archive",
     lambda docs: _spec(docs, "Cluster").pop("plugins"),
     "no WAL archive"),
    ("backups kept 7 days instead of 30",
     lambda docs: _spec(docs, "ObjectStore").update(retentionPolicy="7d"),
     "retentionPolicy '7d'"),
    ("an hourly base backup schedule where a daily one is meant",
     lambda docs: _spec(docs, "ScheduledBackup").update(schedule="0 0 * * * *"),
     "is not once a day"),
    ("a production image by tag only",
     lambda docs: [c.update(image=c["image"].split("@")[0]) for d in docs if d["kind"] in ("Deployment", "Job")
                   for c in d["spec"]["template"]["spec"]["containers"]],
     "not pinned by digest"),
    ("WAL settings other than scripts/dev-env's",
     lambda docs: _spec(docs, "Cluster")["postgresql"]["parameters"].update(max_wal_size="1GB"),
     "scripts/dev-env uses"),
]


def self_test(docs, name):
    failures = []
    for what, mutate, expected in MUTATIONS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        found = check(name, broken)
        if not any(expected in e for e in found):
            failures.append(f"self-test: {what}: the check did not fail with {expected!r} (got {found[:3]})")
        else:
            print(f"self-test: {what}: fails as it should", file=sys.stderr)
    for what, caught in EXTRA_SELF_TESTS:
        if caught():
            print(f"self-test: {what}: fails as it should", file=sys.stderr)
        else:
            failures.append(f"self-test: {what}: the check did not fail")
    return failures


def _missing_crd_folder_fails():
    try:
        crd_schemas.__wrapped__(CRD_DIR / "no-such-folder")
    except SystemExit:
        return True
    return False


def _edited_dashboards_are_drift():
    """dashboards/ changed (a rule's threshold, a dashboard's title) without k8s/generate.py."""
    caught = []
    for name, edit in (("alerts.yaml", lambda t: t + "  - name: edited\n    rules: []\n"),
                       ("api.json", lambda t: t.replace('"title": "', '"title": "edited ', 1))):
        with tempfile.TemporaryDirectory() as tmp:
            for f in (ROOT / "dashboards").iterdir():
                if f.is_file():
                    shutil.copy(f, tmp)
            edited = pathlib.Path(tmp) / name
            before = edited.read_text()
            edited.write_text(edit(before))
            caught.append(edited.read_text() != before and bool(generate.drift(generate.generated(tmp))))
    return all(caught)


def _oversized_overlay_fails():
    """k8s/selftest/oversized: production with more api pods than the budget allows."""
    errors = check("k8s/selftest/oversized", render(HERE / "selftest" / "oversized"), overlay=True)
    return any("connections to the primary at every autoscaler's maximum" in e for e in errors) and \
        all("connections to" in e for e in errors)


def _rule_mutations_fail():
    """A bare max(), a `by` without namespace, an unknown runbook anchor, a wrong severity and
    an alert without a test must each be reported."""
    groups = copy.deepcopy(alert_groups())
    tests = yaml.safe_load(_read("dashboards/alerts_test.yaml"))
    runbooks = (ROOT / "docs" / "RUNBOOKS.md").read_text()
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    alerts[0]["expr"] = "max(storeops_outbox_oldest_age_seconds) > 180"
    alerts[1]["expr"] = "sum by (queue) (rate(storeops_messages_consumed_total[5m])) > 1"
    alerts[2]["annotations"]["runbook_url"] = "docs/RUNBOOKS.md#no-such-heading"
    alerts[3]["labels"]["severity"] = "page"
    alerts[4]["alert"] = "StoreopsUntested"
    found = rule_problems(groups, tests, runbooks)
    wanted = ("without `by`", "drops namespace", "is not a heading", "severity 'page'", "StoreopsUntested: no case")
    return all(any(w in f for f in found) for w in wanted)


EXTRA_SELF_TESTS = [
    ("alert rules: a bare max(), a by without namespace, a dead runbook link, severity page, an untested alert",
     _rule_mutations_fail),
    ("the oversized overlay k8s/selftest/oversized (30 api pods)", _oversized_overlay_fails),
    ("a missing CRD folder", _missing_crd_folder_fails),
    ("dashboards/ edited without running k8s/generate.py", _edited_dashboards_are_drift),
]


# ---------------------------------------------------------------------------------------


def report(name, docs, errors):
    kinds = _by_kind(docs)
    for e in errors:
        print(f"{name}: {e}", file=sys.stderr)
    summary = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    print(f"{name}: {len(docs)} objects ({summary}): " + ("OK" if not errors else f"{len(errors)} problem(s)"))
    if len(kinds.get("Cluster", {})) == 1:
        print(f"{name}: {budget_summary(kinds, kinds.get('ConfigMap', {}))}")
    if any(c["image"].endswith("@sha256:" + "0" * 64) for d in kinds.get("Deployment", {}).values()
           for c in d["spec"]["template"]["spec"]["containers"]):
        print(f"{name}: note: the image digest is the placeholder until the first scripts/release")


def main(argv):
    started = time.monotonic()
    selftest = "--self-test" in argv
    files = [a for a in argv if a != "--self-test"]
    if files:
        targets = [(f, [d for d in yaml.safe_load_all(pathlib.Path(f).read_text()) if d]) for f in files]
    else:
        dirs = [HERE / "base"] + sorted(p for p in (HERE / "overlays").iterdir() if p.is_dir())
        targets = [(str(t.relative_to(ROOT)), render(t)) for t in dirs]
    ok = True
    stale = generate.drift()
    for name in stale:
        print(f"generated: {name} differs from what k8s/generate.py makes of dashboards/; run k8s/generate.py",
              file=sys.stderr)
    print(f"generated from dashboards/: {'OK' if not stale else f'{len(stale)} stale file(s)'}")
    rule_errors = alert_rule_problems()
    for e in rule_errors:
        print(f"dashboards/alerts.yaml: {e}", file=sys.stderr)
    print(f"dashboards/alerts.yaml: {len(alert_groups())} groups, "
          f"{sum(len(g['rules']) for g in alert_groups())} rules: "
          + ("namespace kept, severities, runbooks and tests OK" if not rule_errors else f"{len(rule_errors)} problem(s)"))
    ok = not stale and not rule_errors
    for name, docs in targets:
        errors = check(name, docs)
        report(name, docs, errors)
        ok = ok and not errors
    if selftest:
        overlay = next(((n, d) for n, d in targets if n.endswith("production")), targets[-1])
        failures = self_test(overlay[1], overlay[0])
        for f in failures:
            print(f, file=sys.stderr)
        total = len(MUTATIONS) + len(EXTRA_SELF_TESTS)
        print(f"self-test: {total - len(failures)} of {total} broken manifests fail the check")
        ok = ok and not failures
    print(f"k8s check: {len(targets)} renders, Kubernetes {K8S_VERSIONS[0]}-{K8S_VERSIONS[-1]}, "
          f"CRDs from {CRD_DIR}: {'OK' if ok else 'FAILED'} in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
