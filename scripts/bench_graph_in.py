"""This checkout's `dpros bench graph`, measuring the nodes of another source tree (e.g. an older
commit, for a per-stage before/after on the same machine):

    cd /tmp/before && /path/to/this/checkout/env.sh python /path/to/this/checkout/scripts/bench_graph_in.py \
        --config config/single_arm.yaml --seconds 60 --checkpoint checkpoints/single_arm_pick_place --json OUT.json

The bench's own modules come from this checkout (env.sh puts it on PYTHONPATH; this file's folder,
not the working folder, is first on sys.path), while the node processes it starts with
`python -m diffusion_policy_ros.nodes.<name>` import from the working folder, the other tree.
Messages come from this checkout's install/ (msg/ changes are additive, so older nodes run on them);
an older policy node leaves the ActionChunk stage timings at zero.
"""
import sys

from diffusion_policy_ros.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "graph", *sys.argv[1:]]))
