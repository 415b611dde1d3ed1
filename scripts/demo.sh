#!/usr/bin/env bash
# The main job (`make demo`): the shipped single-arm policy drives the simulated arm through the
# real node graph (sim_node -> policy_node -> safety_filter_node -> sim_node) with streaming
# sampling, for a few seeded episodes. Prints success rate, control rate, end-to-end latency and
# denoiser evaluations per action; writes a scene-camera strip and a latency plot to build/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

checkpoint="${DEMO_CHECKPOINT:-checkpoints/single_arm_pick_place}"
episodes="${DEMO_EPISODES:-5}"
if [ ! -f "$checkpoint/model.safetensors" ]; then
  echo "demo: no policy checkpoint at $checkpoint (checkpoints/single_arm_pick_place/README.md says how it is trained)" >&2
  exit 1
fi
echo "demo: $episodes seeded pick-and-place episodes with $checkpoint through the ROS 2 node graph"
dpros eval sim --checkpoint "$checkpoint" --config config/single_arm.yaml --samplers streaming \
  --episodes "$episodes" --seed 20000 --out build/demo --frames
echo "demo: pictures in build/demo/ (scene_strip.png, latency.png, sim_eval.png)"
