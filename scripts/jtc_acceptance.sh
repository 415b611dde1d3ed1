#!/usr/bin/env bash
# Acceptance of issue 13: over a sim run through the node graph, with the config's arm
# joint_trajectory_controller (6 joints) and separate gripper controller, not one message the
# safety filter sends would be rejected by the JTC's validation rules: forwarded commands, holds,
# and e-stops (engaged and released every E_STOP_EVERY_S seconds during the run).
#
#   ./env.sh bash scripts/jtc_acceptance.sh [EPISODES] [CONFIG]      # default 50, config/single_arm.yaml
#
# jtc_check_node checks each message at its arrival and as if it arrived 0.1 s later; its JSON
# report goes to build/jtc_acceptance/jtc_check.json, the episodes' to build/jtc_acceptance/.
# Needs the ros2 CLI (make setup with ../shared/vendor/ros2-python-tools, or a system ROS 2).
# Exit status 1 when any message would have been rejected.
set -euo pipefail

episodes="${1:-50}"
config="${2:-config/single_arm.yaml}"
checkpoint="${CHECKPOINT:-checkpoints/single_arm_pick_place}"
every="${E_STOP_EVERY_S:-45}"
out=build/jtc_acceptance
mkdir -p "$out"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"

python -m diffusion_policy_ros.nodes.jtc_check_node --ros-args --params-file "$config" \
  -p use_sim_time:=true -p report:="$out/jtc_check.json" > "$out/jtc_check.log" 2>&1 &
checker=$!

estops() {   # the e-stop path too: engaged, then released, through the real service
  while sleep "$every"; do
    ros2 service call /safety/estop diffusion_policy_ros/srv/EStop "{engage: true, reason: acceptance}" \
      > /dev/null 2>&1 || true
    sleep 0.5
    ros2 service call /safety/estop diffusion_policy_ros/srv/EStop "{engage: false, reason: acceptance}" \
      > /dev/null 2>&1 || true
  done
}
estops &
estopper=$!

status=0
dpros eval sim --checkpoint "$checkpoint" --config "$config" --episodes "$episodes" --samplers streaming \
  --real-time-factor 1 --out "$out" || status=$?
kill "$estopper" 2>/dev/null || true
kill -INT "$checker"
wait "$checker" || status=1
tail -1 "$out/jtc_check.log"
python - "$out/jtc_check.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
holds = sum(c["holds"] for c in report["controllers"].values())
print(f"JTC rules: {report['messages']} messages ({holds} holds/stops), {report['rejected']} would be rejected")
for name, c in report["controllers"].items():
    for example in c["examples"]:
        print("  ", example)
EOF
exit "$status"
