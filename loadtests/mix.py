#!/usr/bin/env python3
"""The goose mix beside pgbench and every process's CPU (scripts/load).

    loadtests/mix.py weights OUT    pgbench's -f arguments: the statements each kind of
                                    request runs (loadtests/bench/mix/), weighted by how
                                    many of them the goose run sent
    loadtests/mix.py summary OUT    OUT/summary.md from OUT/report.json (goose),
                                    OUT/cpu.json (loadtests/cpu.py), OUT/pgbench.txt and
                                    OUT/rss.txt

A request kind without a pgbench script (reports, ingest, campaigns, creation) is left
out of pgbench's mix; the summary says which share of the requests that is.
"""
import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench"
# (request name, status or None for any) -> the script that runs its statements.
SCRIPTS = {
    ("poll store tasks", 304): BENCH / "mix" / "poll-304.sql",
    ("poll store tasks", 200): BENCH / "mix" / "poll-200.sql",
    ("sync changes", None): BENCH / "mix" / "sync.sql",
    ("first sync", None): BENCH / "mix" / "sync.sql",
    ("open task", None): BENCH / "mix" / "task.sql",
    ("start task", None): BENCH / "complete.sql",
    ("complete task", None): BENCH / "complete.sql",
    ("approve task", None): BENCH / "complete.sql",
    ("redo task", None): BENCH / "complete.sql",
}


def requests(out):
    """name -> {status: count} of the goose run."""
    report = json.loads((out / "report.json").read_text())
    return {
        entry["path"]: {int(code): n for code, n in entry["status_code_counts"].items()}
        for entry in report["raw_metrics"]["requests"].values()
    }, report


def weights(out):
    """script -> number of requests it stands for; and the requests it does not cover."""
    by_script, uncovered = {}, 0
    for name, codes in requests(out)[0].items():
        for code, n in codes.items():
            script = SCRIPTS.get((name, code)) or SCRIPTS.get((name, None))
            if script is None:
                uncovered += n
            else:
                by_script[script] = by_script.get(script, 0) + n
    return by_script, uncovered


def percentile(times, q):
    """The q-quantile (ms) of goose's {microseconds: count} histogram."""
    total = sum(times.values())
    seen = 0
    for us, n in sorted((int(k), v) for k, v in times.items()):
        seen += n
        if seen >= q * total:
            return us / 1000
    return 0.0


def summary(out):
    by_name, report = requests(out)
    raw = report["raw_metrics"]
    seconds = raw["duration"]
    total = sum(sum(codes.values()) for codes in by_name.values())
    failures = sum(e["fail_count"] for e in raw["requests"].values())
    times = {}
    for entry in raw["requests"].values():
        for us, n in entry["raw_data"]["times_us"].items():
            times[us] = times.get(us, 0) + n
    by_script, uncovered = weights(out)
    pgbench = (out / "pgbench.txt").read_text()
    tps = float(re.search(r"^tps = ([\d.]+)", pgbench, re.M).group(1))
    cpu = json.loads((out / "cpu.json").read_text())
    rate = total / seconds

    lines = [
        f"goose: {raw['maximum_users']} users for {seconds} s: **{total:,} requests, "
        f"{rate:,.0f} req/s**, {failures} failures; p50 {percentile(times, 0.5):.1f} ms, "
        f"p99 {percentile(times, 0.99):.1f} ms, max {percentile(times, 1.0):.0f} ms.",
        "",
        "| request | count | share | statuses |",
        "|---|---|---|---|",
    ]
    for name, codes in sorted(by_name.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(codes.values())
        statuses = ", ".join(f"{c}: {k:,}" for c, k in sorted(codes.items(), key=lambda x: -x[1]))
        lines.append(f"| {name} | {n:,} | {100 * n / total:.2f}% | {statuses} |")
    lines += [
        "",
        f"pgbench on the same data, the statements of {100 * (total - uncovered) / total:.1f}% of the "
        f"mix's requests in the run's proportions ({', '.join(f'{p.name} {n:,}' for p, n in sorted(by_script.items(), key=lambda kv: -kv[1]))}; "
        "reports, ingest, campaigns and creation left out): "
        f"**{tps:,.0f} tps**. The mix ran at **{100 * rate / tps:.0f}%** of that.",
        "",
        f"CPU while goose ran ({cpu['seconds']:.0f} s), per process and per request of the mix:",
        "",
        "| process | CPU-seconds | cores (average) | CPU-ms per request |",
        "|---|---|---|---|",
    ]
    for name, seconds_cpu in sorted(cpu["cpu"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {seconds_cpu:.1f} | {seconds_cpu / cpu['seconds']:.2f} | "
                     f"{1000 * seconds_cpu / total:.3f} |")
    busy = sum(cpu["cpu"].values())
    lines.append(f"| all | {busy:.1f} | {busy / cpu['seconds']:.2f} | {1000 * busy / total:.3f} |")
    rss = (out / "rss.txt").read_text().strip().splitlines() if (out / "rss.txt").exists() else []
    if rss:
        lines += ["", "Peak RSS (VmHWM): " + ", ".join(rss) + "."]
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 3 or argv[1] not in ("weights", "summary"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[2])
    if argv[1] == "weights":
        by_script, _ = weights(out)
        print(" ".join(f"-f {script}@{n}" for script, n in by_script.items() if n > 0))
    else:
        sys.stdout.write(summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
