"""The rig's robot side for `dpros bench record`, in a process of its own as on a real rig: joint
states, tactile pads and the controller's commands (`SyntheticSensors` streams). The cameras stay
in the bench's process; both publish on one time grid.

Protocol on stdin/stdout, one JSON object per line: it prints {"ready": true} once its publishers
exist, starts on {"start_ns": N, "start_wall": W} (see `SyntheticSensors.start`), and on the next
line (or end of input) stops and prints, per stream, {"published", "rate", "late": [[t, s], ...],
"realtime": why its thread is not SCHED_FIFO, "" if it is or was not asked}.
"""
from __future__ import annotations

import argparse
import json
import sys

import rclpy

from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
from diffusion_policy_ros.robot_config import load_robot_config

STREAMS = ("commands", "joints", "tactile")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", required=True, help="the bench's robot config (parameters file)")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--joint-rate", type=float, default=None)
    parser.add_argument("--tactile-rate", type=float, default=None)
    parser.add_argument("--reliable", action="store_true")
    parser.add_argument("--realtime-priority", type=int, default=0,
                        help="SCHED_FIFO priority of each publishing thread (0: the default scheduler)")
    args = parser.parse_args(argv)
    rclpy.init()
    try:
        sensors = SyntheticSensors(load_robot_config(args.params), args.rate, reliable=args.reliable,
                                   joint_rate_hz=args.joint_rate, tactile_rate_hz=args.tactile_rate, streams=STREAMS,
                                   realtime_priority=args.realtime_priority)
        print(json.dumps({"ready": True}), flush=True)
        start = json.loads(sys.stdin.readline() or "{}")
        if "start_ns" not in start:
            return 1
        sensors.start(start_ns=start["start_ns"], start_wall=start["start_wall"])
        sys.stdin.readline()
        sensors.stop()
        print(json.dumps({c.name: {"published": c.published, "rate": c.rate, "late": c.late,
                                   "realtime": c.realtime} for c in sensors.clocks}), flush=True)
        return 0
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
