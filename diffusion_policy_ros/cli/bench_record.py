"""`dpros bench record`: whether the demo recorder keeps up with a real rig's sensors.

Starts demo_recorder_node (a real process, as `dpros up record` does) and publishes what a
teleoperation rig's drivers publish: from this process N cameras of W x H RGB at R Hz (optionally
depth on the first, 16UC1 or 32FC1), and from a second process (`RigDriver`) joint states, tactile
pads and the commands a safety filter forwards, each stream on a thread of its own (SCHED_FIFO
where permitted, as ros2_control's update thread), all on one time grid. A tick more than half a period behind its time counts as late. It records `--episodes` episodes of S seconds back to back
(START right after each SAVE) and reports, per stream, the messages published inside the
episode, received and written by the recorder, the frames dropped and duplicated, the
publishers' late ticks, how long SAVE took and how long after SAVE each episode was trainable
(converted into the dataset):

    dpros bench record --cameras 3 --width 640 --height 480 --rate 30 --depth 16UC1 \\
        --joint-rate 200 --tactile-rate 100 --seconds 60 --episodes 2 --json out.json

Publishers, recorder and conversion share the machine's cores, as on a robot computer.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time

WARM_UP_S = 1.0   # after the publishers start: discovery and the first messages; late ticks count after it


def add_arguments(parser) -> None:
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rate", type=float, default=30.0, help="camera, command and dataset rate (Hz)")
    parser.add_argument("--depth", choices=["none", "16UC1", "32FC1"], default="none",
                        help="depth image of the first camera at its resolution")
    parser.add_argument("--joint-rate", type=float, default=None, help="joint states (Hz; default --rate)")
    parser.add_argument("--tactile-rate", type=float, default=None, help="tactile pads (Hz; default --rate)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each episode")
    parser.add_argument("--episodes", type=int, default=1, help="episodes recorded back to back")
    parser.add_argument("--config", default="single_arm", help="robot config for joints / tactile")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--reliable", action="store_true",
                        help="publish and subscribe sensors RELIABLE (default: best effort, sensor-data QoS)")
    parser.add_argument("--realtime-priority", type=int, default=50,
                        help="SCHED_FIFO priority of the robot side's publisher threads, as ros2_control's "
                             "update thread (thread_priority 50); 0: the default scheduler")
    parser.add_argument("--receive-threads", type=int, default=None,
                        help="the recorder's executor threads (default: its parameter's default)")
    parser.add_argument("--dds-profile", nargs="?", const="config/fastdds_large_messages.xml", default=None,
                        help="Fast DDS profile for recorder and publishers (FASTRTPS_DEFAULT_PROFILES_FILE; "
                             "without a value: the package's large-message profile)")
    parser.add_argument("--root", default=None, help="dataset folder (default: a temporary one, deleted)")
    parser.add_argument("--keep-raw", action="store_true",
                        help="keep each episode's raw MCAP beside the dataset (with --root: to see when messages arrived)")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a free-ish one)")


def bench_config(base_path: str, args, root: str) -> str:
    import yaml

    with open(base_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    shared = doc["/**"]["ros__parameters"]
    names = [f"bench_cam{i}" for i in range(args.cameras)]
    shared["cameras"] = names
    shared["camera"] = {n: {"topic": f"/bench/{n}", "width": args.width, "height": args.height,
                            "depth": args.depth != "none" and i == 0, "depth_max_m": 2.0}
                        for i, n in enumerate(names)}
    doc["/**/demo_recorder_node"] = {"ros__parameters": {
        "dataset_root": root, "dataset_name": "bench", "record_rate_hz": args.rate, "qos_depth": 20,
        "sensor_reliability": "reliable" if args.reliable else "best_effort", "sim_status_topic": "",
        "keep_raw_episodes": args.keep_raw,
        **({"receive_threads": args.receive_threads} if args.receive_threads else {})}}
    path = os.path.join(root, "bench_config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    return path


def run(args) -> int:
    root = args.root or tempfile.mkdtemp(prefix="bench_record_")
    os.makedirs(root, exist_ok=True)
    try:
        result = _bench(args, root)
    finally:
        if args.root is None:
            import shutil
            shutil.rmtree(root, ignore_errors=True)
    _print(result)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0 if result["sustained"] else 1


def _bench(args, root: str) -> dict:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from std_msgs.msg import String

    from diffusion_policy_ros.nodes.synthetic_sensors import SyntheticSensors
    from diffusion_policy_ros.resources import package_share_path
    from diffusion_policy_ros.robot_config import config_path, load_robot_config
    from diffusion_policy_ros.runtime.spin_thread import SpinThread
    from diffusion_policy_ros.srv import EpisodeControl

    domain = args.domain_id if args.domain_id is not None else 150 + os.getpid() % 80
    if args.dds_profile:
        profile = args.dds_profile if os.path.isfile(args.dds_profile) else package_share_path(
            "config", os.path.basename(args.dds_profile))
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = os.path.abspath(profile)   # this process's publishers too
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    params = bench_config(config_path(args.config), args, root)
    config = load_robot_config(params)
    dataset_path = os.path.join(root, "bench")
    log = open(os.path.join(root, "recorder.log"), "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.nodes.demo_recorder_node",
                             "--ros-args", "--params-file", params], env=env, stdout=log, stderr=subprocess.STDOUT)
    driver = RigDriver(params, args, env, os.path.join(root, "driver.log"))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    spin = SpinThread(MultiThreadedExecutor(context=context))
    episodes = []
    try:
        sensors = SyntheticSensors(config, args.rate, distinct_frames=8, reliable=args.reliable,
                                   depth_encoding="32FC1" if args.depth == "none" else args.depth,
                                   streams=("cameras",), context=context)
        client = sensors.create_client(EpisodeControl, "/demo_recorder_node/episode")
        alive = threading.Event()
        sensors.create_subscription(String, "/demo_recorder_node/status", lambda _m: alive.set(), 10)
        spin.executor.add_node(sensors)
        spin.start()
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

        driver.wait_ready()
        start_ns, start_wall = sensors.get_clock().now().nanoseconds + 200_000_000, time.monotonic() + 0.2
        driver.start(start_ns, start_wall)
        sensors.start(start_ns=start_ns, start_wall=start_wall)
        time.sleep(0.2 + WARM_UP_S)           # warm-up: discovery, first messages
        cpu0 = _cpu_seconds(proc.pid)
        t_first = time.monotonic()
        watcher = _ConversionWatch(dataset_path)
        for e in range(args.episodes):
            start = call(EpisodeControl.Request.START, "bench")
            if not start.success:
                raise RuntimeError(start.message)
            time.sleep(args.seconds)
            t_save = time.monotonic()
            saved = call(EpisodeControl.Request.SAVE)
            save_s = time.monotonic() - t_save
            if not saved.success:
                raise RuntimeError(saved.message)
            watcher.expect(saved.episode_index, t_save + save_s)
            episodes.append({"index": saved.episode_index, "frames": int(saved.num_frames), "save_s": save_s,
                             "message": saved.message, "saved_at": t_save})
        recording_s = time.monotonic() - t_first
        cpu = _cpu_seconds(proc.pid)
        cpu = None if cpu is None or cpu0 is None else cpu - cpu0
        sensors.stop()
        clocks = {c.name: {"published": c.published, "rate": c.rate, "late": c.late, "realtime": ""}
                  for c in sensors.clocks}
        clocks.update(driver.stop())
        late_ticks = {name: [(round(t, 3), round(1e3 * behind, 1)) for t, behind in c["late"] if t >= WARM_UP_S]
                      for name, c in clocks.items()}   # (seconds since the publishers started, ms late)
        worst_late_ms = {name: max((ms for _, ms in ticks), default=0.0) for name, ticks in late_ticks.items()}
        late = {name: len(ticks) for name, ticks in late_ticks.items()}
        saves = [round(e.pop("saved_at") - start_wall, 3) for e in episodes]   # seconds since the publishers started
        rates = {name: c["rate"] for name, c in clocks.items()}
        not_realtime = {name: c["realtime"] for name, c in clocks.items() if c["realtime"]}
        trainable = watcher.wait(timeout=max(600.0, 4 * args.seconds * args.episodes))
    finally:
        driver.close()
        spin.stop()
        context.try_shutdown()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    dataset = ReplayBuffer.open(dataset_path)
    for ep in episodes:
        meta = dataset.episode_meta(ep["index"])
        ep["trainable_after_save_s"] = trainable.get(ep["index"])
        ep["conversion_s"] = meta.get("conversion_s")
        ep["streams"] = _stream_table(meta, dataset.get_episode(ep["index"], ["timestamp"])["timestamp"],
                                      sensors.t0, rates)
    megabytes = args.cameras * args.width * args.height * 3 * args.rate / 1e6
    if args.depth != "none":
        megabytes += args.width * args.height * (2 if args.depth == "16UC1" else 4) * args.rate / 1e6
    problems = []
    for ep in episodes:
        for name, row in ep["streams"].items():
            if row["received"] != row["published"] or row["written"] < row["received"]:
                problems.append(f"episode {ep['index']} {name}: published {row['published']}, "
                                f"received {row['received']}, written {row['written']}")
            if row["dropped"] or row["duplicated"]:
                problems.append(f"episode {ep['index']} {name}: {row['dropped']} dropped, "
                                f"{row['duplicated']} duplicated")
        if ep["save_s"] >= 1.0:
            problems.append(f"episode {ep['index']}: SAVE took {ep['save_s']:.2f} s")
        if ep["trainable_after_save_s"] is None or ep["trainable_after_save_s"] > 2 * args.seconds:
            problems.append(f"episode {ep['index']}: trainable {ep['trainable_after_save_s']} s after SAVE "
                            f"(limit {2 * args.seconds:g} s)")
    if any(late.values()):
        problems.append(f"publishers late: {late} (worst, ms: {worst_late_ms})")
    return {
        "cameras": args.cameras, "width": args.width, "height": args.height, "rate_hz": args.rate,
        "depth": args.depth, "dds_profile": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"), "joint_rate_hz": rates["joints"], "tactile_rate_hz": rates.get("tactile"),
        "seconds": args.seconds, "episodes": episodes, "reliable": args.reliable,
        "megabytes_per_s": megabytes, "publisher_late_ticks": late,
        "publisher_worst_late_ms": worst_late_ms, "publisher_late_at_ms": late_ticks,
        "realtime_priority": args.realtime_priority, "publisher_not_realtime": not_realtime,
        "save_at_s": saves,
        "recorder_cpu_percent": None if cpu is None else 100.0 * cpu / recording_s,
        "sustained": not problems, "problems": problems, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


class RigDriver:
    """The robot side of the rig (joints, tactile, commands) in its own process
    (`cli/bench_record_driver.py`): a publisher thread there never waits for the GIL behind a
    640x480 image being published here, as none of a real rig's drivers would."""

    def __init__(self, params: str, args, env: dict, log_path: str):
        self.log = open(log_path, "w")  # noqa: SIM115
        cmd = [sys.executable, "-m", "diffusion_policy_ros.cli.bench_record_driver", "--params", params,
               "--rate", str(args.rate)]
        cmd += ["--joint-rate", str(args.joint_rate)] if args.joint_rate else []
        cmd += ["--tactile-rate", str(args.tactile_rate)] if args.tactile_rate else []
        cmd += ["--reliable"] if args.reliable else []
        cmd += ["--realtime-priority", str(args.realtime_priority)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)

    def _line(self, timeout: float) -> dict:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines or not lines[0]:
            raise RuntimeError(f"the rig's driver process did not answer; see {self.log.name}")
        return json.loads(lines[0])

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._line(timeout)

    def start(self, start_ns: int, start_wall: float) -> None:
        self.proc.stdin.write(json.dumps({"start_ns": start_ns, "start_wall": start_wall}) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> dict:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        return self._line(30.0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


class _ConversionWatch:
    """When each saved episode became trainable: committed in the dataset's episode list."""

    def __init__(self, dataset_path: str):
        self.commit = os.path.join(dataset_path, "meta", "episodes.json")
        self.expected: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def expect(self, index: int, saved_at: float) -> None:
        self.expected[index] = saved_at

    def _committed(self) -> int:
        try:
            with open(self.commit, encoding="utf-8") as f:
                return len(json.load(f)["episode_ends"])
        except (OSError, ValueError, KeyError):
            return 0

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            n = self._committed()
            now = time.monotonic()
            for index, saved_at in list(self.expected.items()):
                if index < n and index not in self.done:
                    self.done[index] = now - saved_at

    def wait(self, timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        while len(self.done) < len(self.expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join()
        return dict(self.done)


def _stream_table(meta: dict, ticks, t0: float, rates: dict[str, float]) -> dict[str, dict]:
    """Per stream: published inside the episode's frames (the publishers' stamps are exact),
    received there, written to the raw episode, dropped and duplicated frames."""
    table = {}
    counts = meta.get("stream_messages", {})
    for name, stats in meta["stream_stats"].items():
        kind = name.split("/", 1)[0]
        rate = rates["joints" if kind == "joints" else "tactile" if kind == "tactile" else "cameras"]
        # Messages stamped t0 + k / rate held by the frames: from the one at the first tick to the last tick.
        first = math.floor((ticks[0] - t0) * rate + 1e-6)
        last = math.floor((ticks[-1] - t0) * rate + 1e-6)
        count = counts.get(name, {})
        table[name] = {"published": last - first + 1, "received": stats["received"],
                       "written": count.get("written", stats["received"]),
                       "received_whole_episode": count.get("received"),
                       "dropped": stats["dropped"], "duplicated": stats["duplicated"]}
    return table


def _print(result: dict) -> None:
    depth = "" if result["depth"] == "none" else f" + depth {result['depth']}"
    print(f"{result['cameras']} x {result['width']}x{result['height']} RGB{depth} @ {result['rate_hz']:g} Hz "
          f"({result['megabytes_per_s']:.1f} MB/s), joints @ {result['joint_rate_hz']:g} Hz, tactile @ "
          f"{result['tactile_rate_hz'] or 0:g} Hz, {len(result['episodes'])} x {result['seconds']:g} s back to back; "
          f"load average {result['load_average'][0]:.2f} on {result['cpu_count']} CPUs")
    for ep in result["episodes"]:
        trainable = ep["trainable_after_save_s"]
        print(f"episode {ep['index']}: {ep['frames']} frames, SAVE {ep['save_s']:.2f} s, trainable "
              f"{'never' if trainable is None else f'{trainable:.1f} s'} after SAVE "
              f"(conversion {ep['conversion_s']} s)")
        print(f"  {'stream':22s} {'published':>9s} {'received':>9s} {'written':>8s} {'dropped':>8s} {'duplicated':>10s}")
        for name, row in ep["streams"].items():
            print(f"  {name:22s} {row['published']:9d} {row['received']:9d} {row['written']:8d} "
                  f"{row['dropped']:8d} {row['duplicated']:10d}")
    for name, why in result["publisher_not_realtime"].items():
        print(f"publisher {name} not real-time: {why}")
    cpu = result["recorder_cpu_percent"]
    print(f"publishers' late ticks (more than half a period): {result['publisher_late_ticks']}, worst "
          f"{result['publisher_worst_late_ms']} ms; recorder CPU "
          f"{'?' if cpu is None else f'{cpu:.0f} %'}")
    print("OK: sustained" if result["sustained"] else "NOT SUSTAINED: " + "; ".join(result["problems"]))


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
