#!/usr/bin/env python3
"""CPU of each process of the cluster while a command runs.

    loadtests/cpu.py PIDS OUT.json -- COMMAND [ARGS...]

PIDS holds `NAME PID` lines (`loadtests/cluster pids`). For each, the CPU time of the
process and all its descendants, those that exited meanwhile included (their time is
in their parent's reaped-children counters: PostgreSQL's backends, for instance), is
read before and after COMMAND runs; COMMAND's own CPU (the load generator) too. OUT.json:
{"seconds": wall time, "cpu": {NAME: CPU-seconds, ..., "load generator": ...}}.
"""
import json
import os
import resource
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def stats():
    """pid -> (ppid, own ticks, reaped children's ticks) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state ppid ... utime(14) stime cutime cstime (1-based).
        ppid = int(fields[1])
        own = int(fields[11]) + int(fields[12])
        reaped = int(fields[13]) + int(fields[14])
        table[int(entry)] = (ppid, own, reaped)
    return table


def tree_ticks(table, root):
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            _, own, reaped = table[pid]
            total += own + reaped
        todo.extend(children.get(pid, []))
    return total


def snapshot(roots):
    table = stats()
    return {name: tree_ticks(table, pid) for name, pid in roots}


def main(argv):
    if len(argv) < 5 or argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        roots = [(name, int(pid)) for name, pid in (line.split() for line in f if line.strip())]
    before, started = snapshot(roots), time.monotonic()
    code = subprocess.call(argv[4:])
    after, seconds = snapshot(roots), time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {name: max(0, after[name] - before[name]) / HZ for name, _ in roots}
    cpu["load generator"] = usage.ru_utime + usage.ru_stime
    with open(argv[2], "w") as f:
        json.dump({"seconds": seconds, "cpu": cpu}, f, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
