"""`dpros bench record`: how much sensor load the demo recorder keeps up with.

Starts demo_recorder_node (a real process) with N synthetic cameras of W x H RGB, publishes every
stream (cameras, joint states, teleop commands, tactile) at R Hz from this process for S seconds
into one episode, saves it and reports, per stream, frames received, dropped and duplicated:

    dpros bench record --cameras 2 --width 640 --height 480 --rate 30 --seconds 10 --json out.json

Publisher and recorder share the machine's cores, as on a robot computer running the drivers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time


def add_arguments(parser) -> None:
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0, help="publish and record rate (Hz)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--config", default="single_arm", help="robot config for joints / tactile")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--reliable", action="store_true",
                        help="publish and subscribe sensors RELIABLE (default: best effort, sensor-data QoS)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a free-ish one)")


def bench_config(base_path: str, cameras: int, width: int, height: int, rate: float, root: str,
                 reliable: bool = False) -> str:
    import yaml

    with open(base_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    shared = doc["/**"]["ros__parameters"]
    names = [f"bench_cam{i}" for i in range(cameras)]
    shared["cameras"] = names
    shared["camera"] = {n: {"topic": f"/bench/{n}", "width": width, "height": height, "depth": False,
                            "depth_max_m": 2.0} for n in names}
    doc["/**/demo_recorder_node"] = {"ros__parameters": {
        "dataset_root": root, "dataset_name": "bench", "record_rate_hz": rate, "qos_depth": 20,
        "sensor_reliability": "reliable" if reliable else "best_effort"}}
    path = os.path.join(root, "bench_config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    return path


def run(args) -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from std_msgs.msg import String

    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.srv import EpisodeControl

    domain = args.domain_id if args.domain_id is not None else 150 + os.getpid() % 80
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="bench_record_") as root:
        params = bench_config(config_path(args.config), args.cameras, args.width, args.height, args.rate, root,
                              args.reliable)
        config = load_robot_config(params)
        log = open(os.path.join(root, "recorder.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.nodes.demo_recorder_node",
                                 "--ros-args", "--params-file", params], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        executor = MultiThreadedExecutor(context=context)
        try:
            sensors = SyntheticSensors(config, args.rate, distinct_frames=8, reliable=args.reliable,
                                       context=context)
            client = sensors.create_client(EpisodeControl, "/demo_recorder_node/episode")
            alive = threading.Event()
            sensors.create_subscription(String, "/demo_recorder_node/status", lambda _m: alive.set(), 10)
            executor.add_node(sensors)
            threading.Thread(target=executor.spin, daemon=True).start()
            deadline = time.monotonic() + 60
            while not (alive.is_set() and client.wait_for_service(timeout_sec=0.5)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"recorder did not come up; see its log:\n{open(log.name).read()[-2000:]}")
                time.sleep(0.1)

            def call(command, task=""):
                future = client.call_async(EpisodeControl.Request(command=command, task=task))
                done = threading.Event()
                future.add_done_callback(lambda _f: done.set())
                if not done.wait(300):
                    raise RuntimeError("recorder did not answer")
                return future.result()

            sensors.start()
            time.sleep(1.0)                       # warm-up: discovery, first messages
            cpu0 = _cpu_seconds(proc.pid)
            start = call(EpisodeControl.Request.START, "bench")
            if not start.success:
                raise RuntimeError(start.message)
            t0 = time.monotonic()
            published0 = sensors.published
            time.sleep(args.seconds)
            published = sensors.published - published0
            t_save = time.monotonic()
            saved = call(EpisodeControl.Request.SAVE)
            save_s = time.monotonic() - t_save
            elapsed = t_save - t0
            cpu = _cpu_seconds(proc.pid) - cpu0
            sensors.stop()
            if not saved.success:
                raise RuntimeError(saved.message)
            meta = ReplayBuffer.open(os.path.join(root, "bench")).episode_meta(saved.episode_index)
        finally:
            executor.shutdown()
            context.try_shutdown()
            proc.terminate()
            proc.wait(10)
            log.close()

    cams = {k: v for k, v in meta["stream_stats"].items() if k.startswith("rgb/")}
    frames = int(saved.num_frames)
    # Same publish and record rate: every tick should get its own fresh message.
    lost = {k: max(0, frames - v["received"]) for k, v in meta["stream_stats"].items()}
    result = {
        "cameras": args.cameras, "width": args.width, "height": args.height, "rate_hz": args.rate,
        "seconds": args.seconds, "reliable": args.reliable, "megabytes_per_s": args.cameras * args.width * args.height * 3 * args.rate / 1e6,
        "ticks_published": published, "publisher_late_ticks": sensors.late_ticks,
        "frames_recorded": frames,
        "frames_received": {k: v["received"] for k, v in meta["stream_stats"].items()},
        "dropped": meta["dropped_frames"] + sum(lost.values()),
        "duplicated": meta["duplicated_frames"],
        "camera_dropped": sum(v["dropped"] + lost[k] for k, v in cams.items()),
        "camera_duplicated": sum(v["duplicated"] for v in cams.values()),
        "stream_stats": meta["stream_stats"],
        "recorder_cpu_percent": 100.0 * cpu / elapsed if cpu is not None else None,
        "save_seconds": save_s,
    }
    ok = result["dropped"] == 0 and result["duplicated"] == 0
    print(f"{args.cameras} x {args.width}x{args.height} RGB @ {args.rate:g} Hz "
          f"({result['megabytes_per_s']:.1f} MB/s) for {args.seconds:g} s: {frames} frames recorded, "
          f"{result['dropped']} dropped, {result['duplicated']} duplicated, recorder CPU "
          f"{result['recorder_cpu_percent']:.0f} %, save {save_s:.2f} s -> {'OK' if ok else 'NOT SUSTAINED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0 if ok else 1


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
