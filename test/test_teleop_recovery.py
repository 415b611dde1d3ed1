"""Issue 19's joystick lock-up, through the real record graph: sim_node, joy_teleop_node and
safety_filter_node as `dpros up record --teleop joy` starts them (graph.build_graph), a gamepad
played by this test on /joy. A full-down jog for 3 s, jogs into the workspace boundary, an
e-stop while jogging and a sim reset: after each the arm answers the stick within 1 s of sim
time, with no restart. Times are sim time (/clock): all nodes follow it, so a busy machine slows
the whole graph down instead of failing the test."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("diffusion_policy_ros.msg")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import JointState, Joy  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from diffusion_policy_ros.graph import build_graph  # noqa: E402
from diffusion_policy_ros.msg import SafetyEvent, TaskStatus  # noqa: E402
from diffusion_policy_ros.nodes._ros_convert import seconds  # noqa: E402
from diffusion_policy_ros.robot_config import load_robot_config  # noqa: E402
from diffusion_policy_ros.runtime.spin_thread import SpinThread  # noqa: E402
from diffusion_policy_ros.safety.kinematics import RobotKinematics  # noqa: E402
from diffusion_policy_ros.srv import EStop, ResetEpisode  # noqa: E402
from waiting import wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "config/single_arm.yaml")
CEILING_M = 0.45           # the filter's workspace top for this module (the config's is out of reach)
RESPOND_S = 1.0            # the bound: the arm moves within 1 s of the operator's jog
MOVED_M = 0.005            # tool displacement that counts as "the arm moved"
# Sticks of the default (xbox) layout: right stick forward/back = tool up/down, left stick = x/y.
NEUTRAL = [0.0] * 8
DOWN = [0, 0, 0, 0, -1.0, 0, 0, 0]
UP = [0, 0, 0, 0, 1.0, 0, 0, 0]
FORWARD = [0, 1.0, 0, 0, 0, 0, 0, 0]
# Rejects a command earns by what it asks for. The filter also rejects for the machine's sake (a
# command not filtered in time, joint states late on a busy machine): the jog cannot avoid those.
COMMAND_REJECTS = ("max_step", "workspace", "position_limit", "past_trajectory", "non_finite")


class Operator:
    """A gamepad at 20 Hz, and what the graph reports: sim time, the tool height (forward
    kinematics of the measured joints), the filter's events and its output."""

    def __init__(self, context):
        self.node = rclpy.create_node("teleop_recovery_operator", context=context)
        self.config = load_robot_config(CONFIG)
        self.kinematics = RobotKinematics(self.config)
        self.arm = self.config.arms[0]
        self.axes = list(NEUTRAL)
        self.sim_time = None
        self.episode = None
        self.samples: list[tuple[float, np.ndarray]] = []   # (stamp, tool position)
        self.events: list[SafetyEvent] = []
        self.forwarded: list[JointTrajectory] = []
        self.commands: list[JointTrajectory] = []
        self._lock = threading.Lock()
        n = self.node
        n.create_subscription(Clock, "/clock", lambda m: setattr(self, "sim_time", seconds(m.clock)), 10)
        n.create_subscription(JointState, self.arm.joint_states_topic, self._on_joints, qos_profile_sensor_data)
        n.create_subscription(SafetyEvent, "/safety/events", self.events.append, 100)
        n.create_subscription(TaskStatus, "/sim/task_status", lambda m: setattr(self, "episode", m.episode), 10)
        n.create_subscription(JointTrajectory, self.arm.controller_topic, self.forwarded.append, 100)
        n.create_subscription(JointTrajectory, self.arm.teleop_topic, self.commands.append, 100)
        self.joy = n.create_publisher(Joy, "/joy", 10)
        self.reset = n.create_client(ResetEpisode, "/sim/reset")
        self.estop = n.create_client(EStop, "/safety/estop")
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(n)
        self._stop = threading.Event()
        self.spin = SpinThread(self.executor).start()
        self._gamepad_thread = threading.Thread(target=self._gamepad, daemon=True)
        self._gamepad_thread.start()

    def _on_joints(self, msg: JointState):
        by_name = dict(zip(msg.name, msg.position))
        q = np.array([by_name[j] for j in self.arm.joint_names])
        with self._lock:
            self.kinematics.update({self.arm.name: q})
            self.samples.append((seconds(msg.header.stamp), self.kinematics.end_effector(self.arm.name)))

    def _gamepad(self):
        while not self._stop.wait(0.05):
            self.joy.publish(Joy(axes=list(self.axes), buttons=[0] * 11))

    def tool(self) -> np.ndarray:
        with self._lock:
            return self.samples[-1][1].copy()

    def tool_since(self, t0: float) -> list[tuple[float, np.ndarray]]:
        with self._lock:
            return [s for s in self.samples if s[0] >= t0]

    def hold_stick(self, axes, sim_seconds: float) -> float:
        """Hold the stick for this long in sim time; returns the sim time it was pressed."""
        start = self.sim_time
        self.axes = list(axes)
        assert wait_for(lambda: self.sim_time >= start + sim_seconds, 60 + 10 * sim_seconds), "sim time stalled"
        return start

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=60), client.srv_name
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        assert done.wait(60), f"no answer from {client.srv_name}"
        return future.result()

    def responds(self, axes, direction, since_tool) -> float:
        """Press the stick; the sim time from the press until the tool has moved MOVED_M along
        `direction` from `since_tool`."""
        pressed = self.sim_time
        self.axes = list(axes)
        return self.moved_after(pressed, direction, since_tool)

    def moved_after(self, t0: float, direction, since_tool) -> float:
        """Sim seconds from t0 until the tool is MOVED_M along `direction` from `since_tool` (fails
        after 10 s of sim time)."""
        def hits():
            return [t for t, p in self.tool_since(t0) if np.dot(p - since_tool, direction) > MOVED_M]
        assert wait_for(lambda: hits() or self.sim_time > t0 + 10.0, 120), "sim time stalled"
        assert hits(), f"the arm did not move along {direction} within 10 s of sim time"
        return hits()[0] - t0

    def new_episode(self, seed: int) -> None:
        """Reset the sim with the stick released, and wait until the arm is at rest there."""
        self.axes = list(NEUTRAL)
        assert self.call(self.reset, ResetEpisode.Request(seed=seed)).success
        self.hold_stick(NEUTRAL, 1.0)

    def rejects(self, since: int, reasons=COMMAND_REJECTS) -> list[SafetyEvent]:
        return [e for e in self.events[since:] if e.action == SafetyEvent.ACTION_REJECT and e.reason in reasons]

    def close(self):
        self._stop.set()
        self._gamepad_thread.join(timeout=5)
        self.spin.stop()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def graph(tmp_path_factory, ros_env, rclpy_context):
    """`dpros up record --teleop joy`'s nodes without the recorder (not what is tested here)."""
    work = tmp_path_factory.mktemp("teleop_graph")
    specs = [s for s in build_graph("record", CONFIG, {"safety_workspace_max": f"[0.9, 0.6, {CEILING_M}]",
                                                       "sim_publish_rate_hz": "5"}, teleop="joy")
             if s.name != "demo_recorder_node"]
    log_path = work / "nodes.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    procs = [subprocess.Popen([sys.executable, "-m", s.module, *s.ros_args(str(work))], env=ros_env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT) for s in specs]
    operator = Operator(rclpy_context)
    try:
        alive = lambda: all(p.poll() is None for p in procs)  # noqa: E731
        # Up: the sim runs and the joy node commands the arm (through the filter).
        up = lambda: operator.commands and operator.samples and operator.sim_time is not None  # noqa: E731
        assert wait_for(lambda: up() or not alive(), 180), log_path.read_text()
        assert alive(), log_path.read_text()
        yield operator, log_path
    finally:
        operator.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def test_full_down_jog_for_3_s_then_the_arm_moves_up_within_1_s(graph):
    """The lock-up of issue 19: 3 s of full-down stick drove the IK onto another configuration
    branch, every later command was rejected (max_step) and the arm stayed frozen."""
    op, log = graph
    op.new_episode(seed=1)
    events = len(op.events)
    op.hold_stick(DOWN, 3.0)
    bottom = op.tool()
    assert bottom[2] < 0.05, f"the jog did not reach the table: tool at {bottom}"
    delay = op.responds(UP, np.array([0, 0, 1.0]), bottom)
    op.axes = list(NEUTRAL)
    print(f"full-down jog: tool stopped at z={bottom[2]:.3f} m; up again {delay:.2f} s (sim) after the stick")
    assert delay <= RESPOND_S, log.read_text()[-3000:]
    assert not op.rejects(events), [e.message for e in op.rejects(events)]
    assert min(p[2] for _, p in op.tool_since(0.0)) >= -0.005     # never through the workspace floor


def test_jog_into_the_workspace_ceiling_and_back(graph):
    """The filter's workspace top (set on the filter only, for this module) stops the jog; jogging
    back moves the arm at once."""
    op, log = graph
    op.new_episode(seed=2)
    events = len(op.events)
    op.hold_stick(UP, 2.0)                       # 0.3 m of stick from 0.24 m: past the 0.45 m ceiling
    top = op.tool()
    assert CEILING_M - 0.05 < top[2] <= CEILING_M + 0.005, top
    delay = op.responds(DOWN, np.array([0, 0, -1.0]), top)
    op.axes = list(NEUTRAL)
    print(f"ceiling jog: tool stopped at z={top[2]:.3f} m; down again {delay:.2f} s (sim) after the stick")
    assert delay <= RESPOND_S, log.read_text()[-3000:]
    assert not op.rejects(events), [e.message for e in op.rejects(events)]


def test_after_an_estop_reject_the_next_command_is_accepted_within_1_s(graph):
    """Jogging on while the e-stop rejects every command; after the release the next teleop command
    is forwarded within 1 s and the arm moves."""
    op, log = graph
    op.new_episode(seed=3)
    events = len(op.events)
    assert op.call(op.estop, EStop.Request(engage=True, reason="test")).engaged
    op.hold_stick(FORWARD, 1.5)                  # the operator keeps pushing: every command is rejected
    assert op.rejects(events, ("estop",)), "the e-stop rejected nothing"
    frozen = op.tool()
    forwarded = len(op.forwarded)
    released_at = op.sim_time
    assert not op.call(op.estop, EStop.Request(engage=False, reason="test")).engaged
    holds = {(e.header.stamp.sec, e.header.stamp.nanosec) for e in op.events}

    def accepted():
        """Trajectories the filter forwarded for a command (a hold carries the stamp of its event)."""
        return [m for m in op.forwarded[forwarded:] if seconds(m.header.stamp) >= released_at
                and (m.header.stamp.sec, m.header.stamp.nanosec) not in holds]
    assert wait_for(lambda: accepted() or op.sim_time > released_at + 10.0, 120)
    assert accepted(), "no teleop command forwarded after the e-stop release"
    accept_delay = seconds(accepted()[0].header.stamp) - released_at
    move_delay = op.moved_after(released_at, np.array([1.0, 0, 0]), frozen)   # the stick is still pushed
    op.axes = list(NEUTRAL)
    print(f"e-stop: first command forwarded {accept_delay:.2f} s, arm moving {move_delay:.2f} s (sim) "
          "after the release")
    assert accept_delay <= RESPOND_S, log.read_text()[-3000:]
    assert move_delay <= RESPOND_S, log.read_text()[-3000:]


def test_after_a_sim_reset_the_jog_starts_from_the_new_pose(graph):
    """Jog away, reset: the jog must not drag the arm back to where it was jogged before."""
    op, log = graph
    op.new_episode(seed=4)
    op.hold_stick(FORWARD, 1.5)
    jogged = op.tool()
    op.new_episode(seed=5)                       # stick released, 1 s of sim at rest after the reset
    home = op.tool()
    assert np.linalg.norm(jogged - home) > 0.05
    settled = op.hold_stick(NEUTRAL, 1.0)
    drift = max(np.linalg.norm(p - home) for _, p in op.tool_since(settled))
    assert drift < 0.01, f"the arm moved {drift:.3f} m after the reset with the stick released"
    assert "re-anchored on the measured joints" in log.read_text()
    delay = op.responds(UP, np.array([0, 0, 1.0]), home)
    op.axes = list(NEUTRAL)
    assert delay <= RESPOND_S


def test_the_console_reset_key_resets_the_sim_and_the_jog_follows(graph, ros_env):
    """One key between episodes: the keyboard node calls /sim/reset, and the jog starts again from
    the new pose (its log says it re-anchored)."""
    op, log = graph
    op.hold_stick(FORWARD, 1.0)
    op.axes = list(NEUTRAL)
    before = op.episode
    anchored = log.read_text().count("re-anchored on the measured joints")
    keyboard = subprocess.Popen([sys.executable, "-m", "diffusion_policy_ros.nodes.keyboard_episode_node",
                                 "--ros-args", "-p", "reset_seed:=7"], env=ros_env, cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(keyboard.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        keyboard.stdin.write("r\n")
        keyboard.stdin.flush()
        assert wait_for(lambda: any("ok: reset" in line for line in lines), 60), "".join(lines)
        assert wait_for(lambda: op.episode is not None and op.episode > before, 30)
        # Re-anchored on the new episode, or on the filter's hold when the arm jumped to the new pose.
        assert wait_for(lambda: log.read_text().count("re-anchored on the measured joints") > anchored, 30), \
            log.read_text()[-2000:]
        keyboard.stdin.write("q\n")
        keyboard.stdin.flush()
        assert keyboard.wait(timeout=30) == 0
    finally:
        if keyboard.poll() is None:
            keyboard.kill()
        reader.join(timeout=5)
    assert "seed 7" in "".join(lines)
