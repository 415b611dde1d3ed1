"""The recorder through the record graph's real nodes (MuJoCo sim, safety filter reading teleop
commands, demo_recorder_node): the dataset's action is what the safety filter forwarded, not what
the teleop device asked; rejected commands are marked per frame; episodes recorded back to back
after sim resets keep every frame (0 dropped, 0 duplicated) and start after their reset."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

pytest.importorskip("diffusion_policy_ros.msg")

from diffusion_policy_ros.data.recorded_frames import SAFETY_BITS  # noqa: E402
from diffusion_policy_ros.msg import SafetyEvent, TaskStatus  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.srv import ResetEpisode  # noqa: E402
from recorder_helpers import REPO_ROOT, Operator, call_idempotent, start_recorder, stop, wait_for_dataset  # noqa: E402
from waiting import wait_for  # noqa: E402

CONFIG = "config/single_arm.yaml"
RATE = 10.0
ROBOT = load_robot_config(os.path.join(REPO_ROOT, CONFIG))
ARM = ROBOT.arms[0]
REJECT = SAFETY_BITS[SafetyEvent.ACTION_REJECT]
ARM_JOINTS = list(ARM.controller_joint_names)            # on controller_topic (the gripper may have its own)
ARM_COLUMNS = [list(ARM.joint_names).index(n) for n in ARM_JOINTS]


def start_node(module, env, log, *args):
    return subprocess.Popen([sys.executable, "-m", f"diffusion_policy_ros.nodes.{module}", "--ros-args",
                             "--params-file", os.path.join(REPO_ROOT, CONFIG), *args],
                            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def seconds(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


class Rig:
    """What the test sees of the graph: joint states, forwarded commands, safety events, the sim's
    task status; and the teleop topic it commands through."""

    def __init__(self, operator):
        node = operator.node
        self.node = node
        self.joints = None
        self.forwarded: list[tuple[float, np.ndarray, np.ndarray]] = []   # stamp, point times, positions
        self.unstamped: list[float] = []
        self.events: list[SafetyEvent] = []
        self.status: TaskStatus | None = None
        self.resets: dict[int, float] = {}          # sim episode -> reset time (sim clock)
        self._lock = threading.Lock()
        node.create_subscription(JointState, ARM.joint_states_topic, self._on_joints, 10)
        node.create_subscription(JointTrajectory, ARM.controller_topic, self._on_forwarded, 10)
        node.create_subscription(SafetyEvent, "/safety/events", self.events.append, 10)
        node.create_subscription(TaskStatus, "/sim/task_status", self._on_status, 10)
        self.teleop = node.create_publisher(JointTrajectory, ARM.teleop_topic, 10)
        self.reset_client = node.create_client(ResetEpisode, "/sim/reset")

    def _on_joints(self, msg):
        order = [list(msg.name).index(n) for n in ARM.joint_names]
        self.joints = np.asarray(msg.position)[order]

    def _on_forwarded(self, msg):
        """Stamped commands as they are; unstamped ones (holds, "start on receipt") only noted at
        the sim time they arrived (the test cannot place them exactly)."""
        stamp = seconds(msg.header.stamp)
        if stamp == 0.0:
            self.unstamped.append(self.sim_time() if self.status is not None else 0.0)
            return
        times = np.array([stamp + seconds(p.time_from_start) for p in msg.points])
        order = [list(msg.joint_names).index(n) for n in ARM_JOINTS]
        with self._lock:
            self.forwarded.append((stamp, times, np.array([p.positions for p in msg.points])[:, order]))

    def _on_status(self, msg):
        self.status = msg
        self.resets.setdefault(int(msg.episode), seconds(msg.header.stamp) - msg.episode_time)

    def command(self, target):
        """A teleop device's command: one point a control period ahead, stamped 0 ("now")."""
        self.teleop.publish(JointTrajectory(joint_names=list(ARM.joint_names), points=[JointTrajectoryPoint(
            positions=[float(x) for x in target], time_from_start=Duration(nanosec=int(1e9 / RATE)))]))

    def reset(self, seed) -> int:
        before = self.status.episode if self.status is not None else -1
        assert call_idempotent(self.reset_client, ResetEpisode.Request(seed=seed), timeout=180).success
        assert wait_for(lambda: self.status is not None and self.status.episode > before, 30)
        return int(self.status.episode)

    def sim_time(self):
        return seconds(self.status.header.stamp)

    def command_for(self, target, sim_seconds, timeout=120.0):
        """Command `target` at the control rate for `sim_seconds` of sim time."""
        end = self.sim_time() + sim_seconds
        deadline = time.monotonic() + timeout
        while self.sim_time() < end:
            assert time.monotonic() < deadline, "sim time does not advance"
            self.command(target)
            time.sleep(1.0 / RATE)


@pytest.fixture(scope="module")
def graph(tmp_path_factory, ros_env, rclpy_context):
    folder = tmp_path_factory.mktemp("graph")
    log = open(folder / "nodes.log", "w")
    sim_time = "use_sim_time:=true"
    # Half real time: the sim keeps time to spare (on a busy machine a sim that cannot keep up
    # never pauses, and its reset service waits long for the sim's lock).
    procs = [start_node("sim_node", ros_env, log, "-p", "real_time_factor:=0.5"),
             start_node("safety_filter_node", ros_env, log, "-p", "input:=teleop", "-p", sim_time)]
    operator = Operator(rclpy_context)
    rig = Rig(operator)
    try:
        assert rig.reset_client.wait_for_service(timeout_sec=60)
        assert wait_for(lambda: rig.joints is not None and rig.status is not None, 60)
        yield folder, operator, rig, log
    finally:
        for p in procs:
            stop(p)
        operator.close()
        log.close()


def recorder(graph, ros_env, name):
    folder, operator, _rig, log = graph
    proc = start_recorder(ros_env, CONFIG, {"dataset_root": str(folder), "dataset_name": name, "use_sim_time": True,
                                            "record_rate_hz": RATE}, log_path=folder / f"{name}.log")
    operator.wait_for_recorder(proc=proc)
    # Its service answering does not mean its subscriptions are matched: on a loaded machine the
    # first forwarded commands could still be lost to discovery (a recorder started long before
    # START, as on a rig, has them).
    recorded = [ARM.controller_topic, "/safety/events"]
    assert wait_for(lambda: all("demo_recorder_node" in {i.node_name for i in operator.node.get_subscriptions_info_by_topic(topic)}
                                for topic in recorded), 30), f"the recorder never subscribed to {recorded}"
    return proc


def test_action_is_what_the_filter_forwarded_and_rejects_are_marked(graph, ros_env):
    folder, operator, rig, _log = graph
    proc = recorder(graph, ros_env, "rejects")
    try:
        rig.reset(7)
        assert wait_for(lambda: rig.joints is not None, 10)
        home = rig.joints.copy()
        reachable = home.copy()
        reachable[0] += 0.15
        too_far = reachable.copy()
        too_far[0] += 1.5                          # > reject_step_rad from the robot: rejected
        assert operator.call("START", "jog, overshoot, come back").success
        rig.command_for(reachable, 1.5)
        events_before = len(rig.events)
        reject_from = rig.sim_time()
        rig.command_for(too_far, 1.5)
        reject_to = rig.sim_time()
        rig.command_for(reachable, 1.0)
        saved = operator.call("SAVE")
        assert saved.success, saved.message
        dataset = wait_for_dataset(folder / "rejects", 1)
    finally:
        stop(proc)
    rejects = [e for e in rig.events[events_before:] if e.action == SafetyEvent.ACTION_REJECT]
    assert rejects, "the filter rejected nothing: the test commands no reject"
    episode = dataset.get_episode(0)
    meta = dataset.episode_meta(0)
    t, action, flags = episode["timestamp"], episode["action"], episode["action_safety"]
    affected = int(np.count_nonzero(flags))
    assert meta["safety_affected_frames"] == affected and f"{affected} with safety events" in saved.message

    # Each frame's action is the setpoint one period later as a joint_trajectory_controller runs
    # the forwarded trajectories: the latest one, linear between its points, from the setpoint in
    # force when it arrived to its first point, its last point after its end.
    # Commands stamped before the episode started are not the episode's (the recorder lets its
    # first command start from the measured position): a hold the filter sent after the sim
    # reset, just before START, must not count here either.
    forwarded = sorted((f for f in rig.forwarded if f[0] >= meta["episode_start"] - 1e-6), key=lambda f: f[0])

    def setpoint(i, at, start):
        _stamp, times, positions = forwarded[i]
        if at <= times[0]:
            w = (at - forwarded[i][0]) / (times[0] - forwarded[i][0]) if times[0] > forwarded[i][0] else 1.0
            return start + (positions[0] - start) * min(1.0, max(0.0, w))
        return np.array([np.interp(at, times, positions[:, j]) for j in range(positions.shape[1])])

    def chain(first_start):
        """Each forwarded trajectory's starting setpoint, given where the first one started."""
        starts = [np.asarray(first_start, dtype=float)]
        for j in range(1, len(forwarded)):
            starts.append(setpoint(j - 1, forwarded[j][0], starts[-1]))
        return starts

    # Where the first command started from (the measured state) washes out once a command
    # arrives after the previous one's first point: check the frames that no longer depend on it.
    low, high = chain(forwarded[0][2][0] - 1.0), chain(forwarded[0][2][0] + 1.0)
    stamps = np.array([f[0] for f in forwarded])
    unstamped = np.array(rig.unstamped)
    checked = 0
    for k, tick in enumerate(t):
        at = tick + 1 / RATE
        i = np.searchsorted(stamps, at + 1e-6, side="right") - 1
        if i < 0 or not np.allclose(setpoint(i, at, low[i]), setpoint(i, at, high[i]), atol=1e-9):
            continue
        if np.any((unstamped > stamps[i] - 0.3) & (unstamped < at + 0.3)):
            continue                    # a hold may be in force: its start is not known exactly here
        nearest_hold = unstamped[np.argmin(np.abs(unstamped - at))] if len(unstamped) else None
        np.testing.assert_allclose(action[k, ARM_COLUMNS], setpoint(i, at, low[i]), atol=1e-5,
                                   err_msg=f"frame {k} at {at:.3f} s: command {i} of {len(stamps)} stamped "
                                           f"{stamps[i]:.3f}, episode start {meta['episode_start']:.3f}, "
                                           f"nearest hold seen {nearest_hold}")
        checked += 1
    assert checked >= 5, f"only {checked} of {len(t)} frames checked"

    # The rejected stretch: never the requested target, marked as rejected frame by frame.
    stretch = (t > reject_from + 0.2) & (t < reject_to - 0.2)
    assert stretch.sum() >= 8
    assert np.all(np.abs(action[stretch, 0] - too_far[0]) > 1.0)
    assert np.all(flags[stretch] & REJECT), flags[stretch]
    assert not np.any(flags[t < reject_from - 0.2] & REJECT)


def test_twenty_episodes_after_resets_keep_every_frame(graph, ros_env):
    folder, operator, rig, _log = graph
    proc = recorder(graph, ros_env, "twenty")
    saved = []
    try:
        for i in range(20):
            episode = rig.reset(100 + i)
            assert operator.call("START", f"episode {i}").success
            operator.record_frames(8)
            res = operator.call("SAVE")
            assert res.success, res.message
            assert "0 dropped, 0 duplicated" in res.message, res.message
            saved.append((res.num_frames, rig.resets[episode]))
        dataset = wait_for_dataset(folder / "twenty", 20, timeout=300)
    finally:
        stop(proc)
    last_image = None
    for i, (frames, reset_time) in enumerate(saved):
        episode, meta = dataset.get_episode(i), dataset.episode_meta(i)
        assert len(episode["timestamp"]) == frames
        assert meta["dropped_frames"] == 0 and meta["duplicated_frames"] == 0, meta["stream_stats"]
        assert episode["timestamp"][0] >= reset_time          # nothing from before the reset
        if last_image is not None:                             # the cube moved: not the last scene
            assert np.abs(episode["obs/scene/rgb"][0].astype(int) - last_image).max() > 20
        last_image = episode["obs/scene/rgb"][-1].astype(int)
