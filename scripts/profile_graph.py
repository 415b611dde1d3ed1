"""Profile the node processes of `dpros bench graph` with py-spy while it runs.

    ./env.sh python scripts/profile_graph.py --out build/latency/profile -- \
        --config config/single_arm.yaml --seconds 60 --checkpoint checkpoints/single_arm_pick_place

Everything after `--` goes to `dpros bench graph`. Once the graph commands the arm (`--after`
seconds after the bench started), each node process is sampled by `py-spy record` for
`--duration` seconds (raw collapsed stacks, per thread) and its CPU time is read from /proc over
the same window. Writes per process `<node>.txt` (py-spy raw) and `summary.md`: CPU share, the
load average beside it, samples per thread and the functions holding the most samples.
py-spy slows what it samples: take latency numbers from a bench run without it.

Works on any commit of the project (it only needs `dpros bench graph` and its child processes
`python -m diffusion_policy_ros.nodes.<name>_node`), so the same command profiles before and after.
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time

NODES = ("sim_node", "policy_node", "safety_filter_node")
TOP = 25


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_nodes(bench_pid: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for pid in children(bench_pid):
            for name in NODES:
                if f"nodes.{name}" in cmdline(pid):
                    found[name] = pid
        if len(found) == len(NODES):
            return found
        time.sleep(0.5)
    raise SystemExit(f"profile_graph: node processes not found under pid {bench_pid}")


def summarize(path: str) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """py-spy raw stacks -> total samples, samples per thread, inclusive and self per function."""
    threads, inclusive, own = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            threads[frames[0].split(": ", 1)[-1]] += n   # 'thread (tid): name'
            names = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0].rstrip(")") + ")"
                     for frame in frames[1:]]
            for name in set(names):
                inclusive[name] += n
            if names:
                own[names[-1]] += n
    return total, threads.most_common(), inclusive.most_common(TOP), own.most_common(TOP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/latency/profile")
    parser.add_argument("--after", type=float, default=25.0, help="seconds after start before sampling")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sampling")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    bench_args = [a for a in args.bench_args if a != "--"]
    os.makedirs(args.out, exist_ok=True)
    bench = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.cli.main", "bench", "graph", *bench_args],
                             stdout=open(os.path.join(args.out, "bench.log"), "w"), stderr=subprocess.STDOUT)
    try:
        nodes = find_nodes(bench.pid, 120.0)
        time.sleep(max(0.0, args.after - 0.0))
        load_before = os.getloadavg()
        cpu_start = {name: cpu_seconds(pid) for name, pid in nodes.items()}
        wall_start = time.monotonic()
        spies = {name: subprocess.Popen(["py-spy", "record", "-p", str(pid), "-d", str(int(args.duration)),
                                         "-r", str(args.rate), "--format", "raw", "--threads", "--nonblocking",
                                         "--nolineno", "-o", os.path.join(args.out, f"{name}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, pid in nodes.items()}
        for spy in spies.values():
            spy.wait()
        wall = time.monotonic() - wall_start
        cpu = {name: 100.0 * (cpu_seconds(pid) - cpu_start[name]) / wall for name, pid in nodes.items()}
        load_after = os.getloadavg()
        bench.wait()
    finally:
        if bench.poll() is None:
            bench.terminate()
            bench.wait()
    lines = [f"# py-spy profile of `dpros bench graph {' '.join(bench_args)}`", "",
             f"{args.duration:g} s sampled at {args.rate} Hz, {args.after:g} s after start; load average "
             f"before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} CPUs", "",
             "| process | CPU % (of one core) |", "|---|---|"]
    lines += [f"| {name} | {cpu[name]:.1f} |" for name in NODES]
    for name in NODES:
        total, threads, inclusive, own = summarize(os.path.join(args.out, f"{name}.txt"))
        lines += ["", f"## {name}: {total} samples (threads not idle)", "", "| thread | share |", "|---|---|"]
        lines += [f"| {t} | {100.0 * n / max(total, 1):.1f} % |" for t, n in threads]
        lines += ["", "| function (inclusive) | share |", "|---|---|"]
        lines += [f"| `{f}` | {100.0 * n / max(total, 1):.1f} % |" for f, n in inclusive]
        lines += ["", "| function (self) | share |", "|---|---|"]
        lines += [f"| `{f}` | {100.0 * n / max(total, 1):.1f} % |" for f, n in own]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:8 + len(NODES)]))
    print(f"profile_graph: wrote {args.out}/summary.md")
    return bench.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
