#!/usr/bin/env python3
"""Render a kustomization of k8s/ into the manifests to apply (stdout).

    k8s/render.py k8s/overlays/production | kubectl apply --server-side -f -

Two things plain `kubectl apply -k` cannot do, done here:
  - the dashboards and alerting rules live once, in dashboards/, outside the
    kustomization roots, so kustomize runs with --load-restrictor LoadRestrictionsNone;
  - kustomize cannot put a file's YAML under a field, so every object annotated
    `storeops.io/groups-from: <file>` (the PrometheusRule) gets spec.groups = that
    file's `groups` (the path is relative to the repository root).

kustomize: `kubectl` next to this python (scripts/py-env installs a pinned one), else
`kustomize` or `kubectl` on the PATH. Needs PyYAML.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
GROUPS_FROM = "storeops.io/groups-from"


def kustomize_command():
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    if os.access(beside, os.X_OK):
        return [str(beside), "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    sys.exit("render: need kubectl or kustomize (scripts/py-env installs kubectl)")


def kustomize(path):
    """The kustomization at `path`, built, as text."""
    cmd = kustomize_command() + ["--load-restrictor", "LoadRestrictionsNone", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"render: {' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def fill_groups(docs):
    for doc in docs:
        source = doc.get("metadata", {}).get("annotations", {}).get(GROUPS_FROM)
        if source:
            rules = yaml.safe_load((ROOT / source).read_text())
            doc.setdefault("spec", {})["groups"] = rules["groups"]
    return docs


def render(path):
    """The objects of the kustomization at `path`, ready to apply (a list of dicts)."""
    return fill_groups([d for d in yaml.safe_load_all(kustomize(path)) if d])


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    # Multi-line strings (dashboards, rule expressions) as block scalars, as kustomize
    # writes them, so the output stays readable and diffable.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(docs):
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def main(argv):
    if len(argv) != 1:
        sys.exit(__doc__)
    sys.stdout.write(dump(render(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
