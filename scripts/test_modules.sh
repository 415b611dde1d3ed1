#!/usr/bin/env bash
# The test suite, one pytest process per test module (as colcon/ament runs each test file): DDS
# participants, rclpy contexts and threads a module leaves in its process cannot reach the next
# module (in one process, test_interfaces lost messages after test_parameters' nodes, 3 runs in 4).
#   ./env.sh bash scripts/test_modules.sh [PYTEST ARGS...]      # e.g. -k safety, -x
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
passed=0
start=$(date +%s)
flaky=()
for module in test/test_*.py; do
  python -m pytest "$module" -p no:cacheprovider "$@"
  status=$?
  if [ $status -ne 0 ] && [ $status -ne 5 ] && [ -z "${DPROS_NO_RERUN:-}" ]; then
    # Known (issue 21 stays open for it): on a loaded machine a test's executor thread can die
    # when entities are destroyed while it spins (ros2/rclpy#1284), and every later answer to
    # that test process is lost. Fixed in the recorder tests and test_policy_node; until no module
    # shows it, a module that fails is run once more and named below either way.
    # DPROS_NO_RERUN=1 turns this off.
    echo "=== $module failed (exit $status): running it once more"
    python -m pytest "$module" -p no:cacheprovider "$@"
    rerun=$?
    [ $rerun -eq 0 ] && flaky+=("$module (failed, then passed)")
    status=$rerun
  fi
  case $status in
    0) passed=$((passed + 1)) ;;
    5) ;;                                   # nothing selected in this module (-k)
    *) failed+=("$module (exit $status)") ;;
  esac
done
echo "=== $passed modules passed, ${#failed[@]} failed, ${#flaky[@]} passed only when run again, $(( $(date +%s) - start )) s"
for f in "${flaky[@]}"; do echo "FLAKY MODULE $f"; done
for f in "${failed[@]}"; do echo "FAILED MODULE $f"; done
[ ${#failed[@]} -eq 0 ]
