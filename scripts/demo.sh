#!/usr/bin/env bash
# The main job: the shipped policy drives the simulated arm through the real node graph
# (sim_node -> policy_node -> safety_filter_node -> sim_node). Run through `make demo`.
set -euo pipefail
echo "make demo: the end-to-end demo (issue 7) has not landed yet."
echo "It will run the shipped single-arm policy in the MuJoCo sim through the node graph for"
echo "seeded episodes and print success rate, control rate, latency and NFE per action."
exit 1
