#!/usr/bin/env bash
# The lead's acceptance measurements of this round, one after the other on an otherwise idle
# machine (nothing else running): ./env.sh bash scripts/final_measurements.sh [STEP...]
# Each step writes build/final/<step>.{json,log}; the numbers go into the issues' closing notes.
set -uo pipefail
out=build/final
mkdir -p "$out"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-0}"   # the test suite uses 1-232
ckpt=checkpoints/single_arm_pick_place
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(graph10 graph20 safety record uprecord jtc soak)
for step in "${steps[@]}"; do
  echo "=== $step $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  case "$step" in
    graph10) dpros bench graph --config config/single_arm.yaml --seconds 60 --checkpoint $ckpt --json $out/graph10.json ;;
    graph20) dpros bench graph --config config/single_arm.yaml --seconds 60 --control-rate-hz 20 --checkpoint $ckpt --json $out/graph20.json ;;
    safety) dpros bench safety --seconds 20 --json $out/safety.json ;;
    record) dpros bench record --cameras 3 --width 640 --height 480 --rate 30 --depth 16UC1 --joint-rate 200 \
              --tactile-rate 100 --seconds 60 --episodes 2 --dds-profile --json $out/record.json ;;
    uprecord) rm -rf $out/uprecord && dpros up record --config config/single_arm.yaml --episodes 20 \
                --set record_dataset_root:=$out/uprecord --log-dir $out/uprecord_logs ;;
    jtc) bash scripts/jtc_acceptance.sh 50 ;;
    eval50) dpros eval sim --checkpoint $ckpt --episodes 50 --samplers streaming --out $out/eval50 ;;
    soak) dpros bench safety --soak 600 --checkpoint $ckpt --json $out/soak.json ;;
  esac > "$out/$step.log" 2>&1
  echo "    exit $? $(date -u +%H:%M:%S); tail:"; tail -4 "$out/$step.log" | sed 's/^/    /'
done
