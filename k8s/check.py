#!/usr/bin/env python3
"""Offline checks of the storeops manifests (no cluster needed).

    k8s/check.py                      # builds base and every overlay with kustomize
    k8s/check.py rendered.yaml ...    # checks already rendered manifests

Renders with `kustomize build` or `kubectl kustomize` (whichever is installed), parses
every document and asserts what SPEC §6/§11 ask of them: probes on the admin port,
terminationGracePeriodSeconds above drain + grace, non-root read-only containers with no
capabilities, resources, spread across nodes, a PDB per Deployment, the migration Job,
the Secret referenced and never defined. Exit 0 when everything holds.
"""
import pathlib
import shutil
import subprocess
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROLES = {"storeops-api": "api", "storeops-worker": "worker", "storeops-scheduler": "scheduler"}
SECRET_KEYS = "DATABASE_URL DATABASE_REPLICA_URLS AMQP_URL AUTH_JWT_SECRET"


def render(path):
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(path)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(path)]
    else:
        sys.exit("need kustomize or kubectl to render " + str(path))
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def check(name, text):
    errors = []
    err = errors.append
    docs = [d for d in yaml.safe_load_all(text) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"].startswith("storeops-config"):
            config = cm["data"]
    for key, want in {"HTTP_ADDR": "0.0.0.0:8080", "ADMIN_ADDR": "0.0.0.0:9464", "LOG_FORMAT": "json"}.items():
        if config.get(key) != want:
            err(f"ConfigMap storeops-config: {key}={config.get(key)!r}, want {want!r}")
    drain = int(config.get("SHUTDOWN_DRAIN_SECONDS", 0))
    grace = int(config.get("SHUTDOWN_GRACE_SECONDS", 30))
    for secret in by_kind.get("Secret", []):
        err(f"Secret {secret['metadata']['name']} is defined in the manifests; secrets are created per environment")
    for key in SECRET_KEYS.split():
        if any(key in v for v in config.values()) or key in config:
            err(f"ConfigMap holds {key}, which belongs in storeops-secrets")

    def pod_checks(kind_name, spec, containers):
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            err(f"{kind_name}: pod securityContext.runAsNonRoot is not true")
        if spec.get("automountServiceAccountToken") is not False:
            err(f"{kind_name}: automountServiceAccountToken should be false")
        for c in containers:
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                err(f"{kind_name}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(f"{kind_name}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                err(f"{kind_name}: capabilities.drop is not [ALL]")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
                err(f"{kind_name}: missing cpu/memory requests")
            if not res.get("limits", {}).get("memory"):
                err(f"{kind_name}: missing memory limit")
            env_from = c.get("envFrom", [])
            if not any(e.get("secretRef", {}).get("name") == "storeops-secrets" for e in env_from):
                err(f"{kind_name}: does not take env from Secret storeops-secrets")
            if not any(e.get("configMapRef", {}).get("name", "").startswith("storeops-config") for e in env_from):
                err(f"{kind_name}: does not take env from ConfigMap storeops-config")
            if ":" in c["image"] and c["image"].endswith(":latest") and "production" in name:
                err(f"{kind_name}: production runs image {c['image']}")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    if set(deployments) != set(ROLES):
        err(f"Deployments {sorted(deployments)}, want {sorted(ROLES)}")
    images = set()
    for dname, d in deployments.items():
        role = ROLES.get(dname)
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        images.add(c["image"])
        kn = f"Deployment {dname}"
        if c.get("args") != [role]:
            err(f"{kn}: args {c.get('args')}, want [{role}]")
        if d["spec"].get("replicas", 1) < 2:
            err(f"{kn}: fewer than 2 replicas")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        if tgps <= drain + grace:
            err(f"{kn}: terminationGracePeriodSeconds {tgps} <= drain {drain} + grace {grace}")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("admin") != 9464:
            err(f"{kn}: no admin port 9464")
        if role == "api" and ports.get("http") != 8080:
            err(f"{kn}: no http port 8080")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("admin", 9464):
                err(f"{kn}: {probe} is not GET {path} on the admin port")
        spread = spec.get("topologySpreadConstraints", [])
        if not any(t["topologyKey"] == "kubernetes.io/hostname" for t in spread):
            err(f"{kn}: no topologySpreadConstraint across kubernetes.io/hostname")
        pod_checks(kn, spec, spec["containers"])
        selector = d["spec"]["selector"]["matchLabels"]
        if not any(p["spec"]["selector"].get("matchLabels") == selector and p["spec"].get("minAvailable") == 1
                   for p in by_kind.get("PodDisruptionBudget", [])):
            err(f"{kn}: no PodDisruptionBudget with minAvailable 1 for {selector}")
    if len(images) > 1:
        err(f"Deployments run different images: {sorted(images)}")

    jobs = by_kind.get("Job", [])
    if not any(j["spec"]["template"]["spec"]["containers"][0].get("args") == ["migrate", "up"] for j in jobs):
        err("no Job running `migrate up`")
    for j in jobs:
        spec = j["spec"]["template"]["spec"]
        pod_checks(f"Job {j['metadata']['name']}", spec, spec["containers"])
        if spec["containers"][0]["image"] not in images:
            err(f"Job {j['metadata']['name']}: image differs from the Deployments'")

    api_labels = deployments.get("storeops-api", {}).get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    services = by_kind.get("Service", [])
    if not any(s["spec"]["selector"].items() <= api_labels.items()
               and any(p.get("targetPort") in ("http", 8080) for p in s["spec"]["ports"]) for s in services):
        err("no Service selecting the api pods on the http port")
    for s in services:
        if any(p.get("targetPort") in ("admin", 9464) for p in s["spec"]["ports"]):
            err(f"Service {s['metadata']['name']} exposes the admin port")

    admin_rules = [r for p in by_kind.get("NetworkPolicy", []) for r in p["spec"].get("ingress", [])
                   if any(port.get("port") in (9464, "admin") for port in r.get("ports", []))]
    if not admin_rules:
        err("no NetworkPolicy rule for the admin port")
    for r in admin_rules:
        if not r.get("from"):
            err("a NetworkPolicy opens the admin port to everyone")
    for e in errors:
        print(f"{name}: {e}", file=sys.stderr)
    print(f"{name}: {len(docs)} objects ({', '.join(f'{len(v)} {k}' for k, v in sorted(by_kind.items()))}): "
          + ("OK" if not errors else f"{len(errors)} problem(s)"))
    return not errors


def main(argv):
    if argv:
        results = [check(a, pathlib.Path(a).read_text()) for a in argv]
    else:
        targets = [HERE / "base"] + sorted(p for p in (HERE / "overlays").iterdir() if p.is_dir())
        results = [check(str(t.relative_to(HERE.parent)), render(t)) for t in targets]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
