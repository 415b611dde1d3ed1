#!/usr/bin/env bash
# The main job (`make demo`): a shipped policy drives the simulated robot through the real node
# graph (sim_node -> policy_node -> safety_filter_node -> sim_node) with streaming sampling, for a
# few seeded episodes. Prints success rate, control rate, end-to-end latency, denoiser evaluations
# per action and the safety filter's interventions; writes a scene-camera strip and a latency plot
# to build/demo/ (build/demo_bimanual/). DEMO=single_arm (default): one arm picks and places a cube. DEMO=bimanual: two
# arms hand a cube over, the policy seeing RGB, depth, touch and joints.
set -euo pipefail
cd "$(dirname "$0")/.."

demo="${DEMO:-single_arm}"
case "$demo" in
  single_arm)
    default_checkpoint=checkpoints/single_arm_pick_place
    config=config/single_arm.yaml
    what="pick-and-place"
    out=build/demo ;;
  bimanual)
    default_checkpoint=checkpoints/bimanual_handover
    config=config/bimanual.yaml
    what="bimanual handover"
    out=build/demo_bimanual ;;
  *)
    echo "demo: unknown DEMO=$demo; choose single_arm or bimanual" >&2
    exit 2 ;;
esac
checkpoint="${DEMO_CHECKPOINT:-$default_checkpoint}"
episodes="${DEMO_EPISODES:-5}"
if [ ! -f "$checkpoint/model.safetensors" ]; then
  echo "demo: no policy checkpoint at $checkpoint." >&2
  if [ -f "$default_checkpoint/README.md" ]; then
    echo "demo: $default_checkpoint/README.md says how it is trained." >&2
  else
    echo "demo: train it first with the commands in docs/bimanual_handover.md (dpros sim record --task handover" \
         "--config bimanual ..., then dpros train --config bimanual ... --out $default_checkpoint)," \
         "or point DEMO_CHECKPOINT=<folder> at a checkpoint for $config." >&2
  fi
  exit 1
fi
echo "demo: $episodes seeded $what episodes with $checkpoint through the ROS 2 node graph"
dpros eval sim --checkpoint "$checkpoint" --config "$config" --samplers streaming \
  --episodes "$episodes" --seed 20000 --out "$out" --frames
echo "demo: pictures in $out/ (scene_strip.png, latency.png, sim_eval.png)"
