#!/usr/bin/env python3
"""Print the CloudNativePG Cluster that restores an overlay's database to a point in time.

    k8s/restore.py k8s/overlays/production 2026-11-25T09:41:00Z > /tmp/storeops-db-pitr.yaml
    k8s/restore.py k8s/overlays/production latest                # to the end of the archive

The restored cluster is the overlay's Cluster as kustomize renders it (same instances,
sizes, parameters and roles), renamed (default: <name>-pitr, beside the damaged one, which
keeps running until you cut over), bootstrapped by `recovery` from the overlay's
ObjectStore (the base backup before the target, then WAL up to it), and archiving its
own WAL to the same ObjectStore under its own server name, so it never writes into the
archive it restores from. docs/RUNBOOKS.md, "Restore the database to a point in time",
says what to do with it. k8s/check.py validates this output for production against the
Cluster CRD, so the runbook's manifest cannot rot. Python with PyYAML (scripts/py-env).
"""
import datetime
import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import check  # noqa: E402  (k8s/check.py: rendering and the plugin's name)


def restore_cluster(docs, target, name=None):
    """The recovery Cluster (a dict) for the rendered objects `docs`; target is an RFC 3339
    time or "latest"."""
    (cluster,) = [d for d in docs if d["kind"] == "Cluster"]
    (archiver,) = [p for p in cluster["spec"].get("plugins", [])
                   if p.get("name") == check.BARMAN_PLUGIN and p.get("isWALArchiver")]
    store = archiver["parameters"]["barmanObjectName"]
    source = cluster["metadata"]["name"]
    # Where the damaged cluster archives: its serverName parameter, else its own name.
    source_server = archiver["parameters"].get("serverName", source)
    name = name or f"{source}-pitr"
    spec = {k: v for k, v in cluster["spec"].items() if k not in ("bootstrap", "plugins", "externalClusters")}
    initdb = cluster["spec"].get("bootstrap", {}).get("initdb", {})
    recovery = {"source": source, "database": initdb.get("database", "app"), "owner": initdb.get("owner", "app")}
    if target != "latest":
        when = datetime.datetime.fromisoformat(target.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise SystemExit(f"restore: {target!r} has no time zone; write it as 2026-11-25T09:41:00Z")
        recovery["recoveryTarget"] = {"targetTime": when.isoformat()}
    spec["bootstrap"] = {"recovery": recovery}
    spec["externalClusters"] = [{"name": source, "plugin": {
        "name": check.BARMAN_PLUGIN,
        "parameters": {"barmanObjectName": store, "serverName": source_server}}}]
    spec["plugins"] = [{"name": check.BARMAN_PLUGIN, "isWALArchiver": True,
                        "parameters": {"barmanObjectName": store, "serverName": name}}]
    metadata = {"name": name, "labels": dict(cluster["metadata"].get("labels", {}))}
    if cluster["metadata"].get("namespace"):
        metadata["namespace"] = cluster["metadata"]["namespace"]
    metadata["labels"]["storeops.io/restored-from"] = source
    return {"apiVersion": cluster["apiVersion"], "kind": "Cluster", "metadata": metadata, "spec": spec}


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    docs = check.render(pathlib.Path(argv[0]))
    restored = restore_cluster(docs, argv[1], argv[2] if len(argv) == 3 else None)
    sys.stdout.write(f"# k8s/restore.py {' '.join(argv)}\n")
    sys.stdout.write(yaml.safe_dump(restored, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
