"""Success bars per sampler and setting, gathered from several `dpros eval sim` / `dpros eval policy`
results (their sim_eval.json / policy_eval.json), one group of bars per labelled file.

    ./env.sh python scripts/plot_sampler_success.py --out docs/results/bars.png \
        "displaced, graph, real time=build/eval_sim/a/sim_eval.json,build/eval_sim/b/sim_eval.json" \
        "static, no ROS=build/eval_policy/c/policy_eval.json"

A group takes the methods of all its files (comma separated). Each bar is labelled with its
successes over its episodes, so groups of different sizes read right.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="+", metavar="LABEL=JSON")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    import numpy as np

    from diffusion_policy_ros.reporting import _pyplot, _save

    groups = []
    for item in args.groups:
        label, sep, path = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: expected LABEL=JSON")
        methods = {}
        for one in path.split(","):
            with open(one) as f:
                methods.update(json.load(f)["methods"])
        groups.append((label, methods))
    samplers = list(dict.fromkeys(m["sampler"] for _, methods in groups for m in methods.values()))
    plt = _pyplot()
    width = 0.8 / len(samplers)
    colors = {"streaming": "tab:green", "ddim": "tab:orange", "ddpm": "tab:blue"}
    fig, ax = plt.subplots(figsize=(2.0 + 2.2 * len(groups), 4.0))
    labelled: set[str] = set()
    for g, (_, methods) in enumerate(groups):
        present = sorted(methods.values(), key=lambda m: samplers.index(m["sampler"]))
        for i, m in enumerate(present):
            sampler = m["sampler"]
            x = g + (i - (len(present) - 1) / 2) * width
            value = 100 * m["successes"] / m["episodes"]
            ax.bar(x, value, width * 0.95, color=colors.get(sampler, "tab:gray"),
                   label=None if sampler in labelled else sampler)
            labelled.add(sampler)
            ax.text(x, value + 1.5, f"{m['successes']}/{m['episodes']}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(groups)), [label for label, _ in groups], fontsize=8)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 119)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper center", ncol=len(samplers), fontsize=8)
    if args.title:
        ax.set_title(args.title, fontsize=9)
    fig.tight_layout()
    _save(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
