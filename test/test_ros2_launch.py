"""The graph as a ROS 2 user runs it: `ros2 launch`, `ros2 lifecycle`, `ros2 service call`,
`ros2 param` (the real tools, from a system ROS 2 or ../shared/vendor/ros2-python-tools). The
launches run without MUJOCO_GL and without a display, as under a service or on a robot PC: the sim
picks its OpenGL platform itself."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import yaml

from diffusion_policy_ros import graph
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from ros2_tools import need
from waiting import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, "checkpoints", "single_arm_pick_place")
SEED = 10000          # solved by the shipped policy through the graph (docs/results/sim_eval_pick_place.json)
STARTUP_S = 240.0     # the policy loads and warms up its checkpoint on configure
# The graphs run on the sim's clock; half speed leaves the nodes twice the wall time per control
# period, so a loaded CI machine does not turn commands late (the success is the policy's or the
# expert's, not the CPU's).
SIM_SPEED = "0.5"


@pytest.fixture(scope="module")
def launch_env(ros_env):
    need(modules=["launch", "launch_ros", "ros2cli"], commands=["ros2"])
    return {k: v for k, v in ros_env.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}


class Launch:
    """`ros2 launch diffusion_policy_ros <file> <args>` in a session of its own; Ctrl-C to stop."""

    def __init__(self, env, log_path, launch_file, **arguments):
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        env = {**env, "PYTHONFAULTHANDLER": "1"}   # stacks of a process that will not stop, on SIGABRT
        # A suite started in the background (`cmd &` in a script) has SIGINT ignored, and an ignored
        # signal stays ignored across exec: launch would never see the Ctrl-C below (ran 30 s to the
        # SIGKILL, nodes untouched). A handled one is reset to the default in the child.
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        command = ["ros2", "launch", graph.PACKAGE, launch_file] + [f"{k}:={v}" for k, v in arguments.items()]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _keep_evidence_of_a_slow_stop(self):
        """The processes still alive, their Python stacks (SIGABRT under PYTHONFAULTHANDLER) and the launch
        log, kept under build/test-logs: pytest's tmp dir is gone by the time someone looks."""
        columns = "pid,ppid,stat,etime,time,pending,blocked,ignored,caught,wchan:20,args"
        alive = subprocess.run(["ps", "-o", columns, "--sid", str(self.process.pid)], capture_output=True, text=True).stdout
        nodes = [int(line.split()[0]) for line in alive.splitlines()[1:] if int(line.split()[0]) != self.process.pid]
        for pid in nodes + [self.process.pid]:   # nodes first: a live launch still logs their stderr
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
            time.sleep(2.0)
        keep_dir = os.path.join(ROOT, "build", "test-logs")
        os.makedirs(keep_dir, exist_ok=True)
        path = os.path.join(keep_dir, f"slow-stop-{time.strftime('%Y%m%d-%H%M%S')}.log")
        with open(path, "w") as f:
            f.write(f"still running 30 s after SIGINT:\n{alive}\n--- launch log ---\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)   # as Ctrl-C: launch stops its nodes
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._keep_evidence_of_a_slow_stop()
        try:   # a node that outlived its launch would answer the next test's requests in this domain
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()
        return self.process.returncode


def ros2(env, *args, timeout=60.0) -> str:
    out = subprocess.run(["ros2", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"ros2 {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout


def ros2_query(env, *args, attempts=3, timeout=20.0) -> str:
    """A read-only `ros2` command, asked again when it hangs: `ros2 param` waits for its service's
    answer without a timeout (ros2param's spin_until_future_complete), and an answer sent before
    the server has discovered the CLI's reply reader is lost (a CI run's `ros2 param describe`
    hung 60 s while the same node answered everything else)."""
    for _ in range(attempts - 1):
        with contextlib.suppress(subprocess.TimeoutExpired):
            return ros2(env, *args, timeout=timeout)
    return ros2(env, *args, timeout=timeout)


class Probe:
    """What the test watches: the sim's task status and the safety filter's events."""

    def __init__(self, domain_id):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from diffusion_policy_ros.msg import SafetyEvent, TaskStatus
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("launch_probe", context=self.context)
        self.status, self.events = [], []
        self.node.create_subscription(TaskStatus, "/sim/task_status", self.status.append, 10)
        self.node.create_subscription(SafetyEvent, "/safety/events", self.events.append, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = SpinThread(self.executor).start()

    def close(self):
        self.thread.stop()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def sim_launch(launch_env, ros_domain_id, tmp_path_factory):
    log = tmp_path_factory.mktemp("sim_launch") / "launch.log"
    launch = Launch(launch_env, log, "sim.launch.py", policy_checkpoint=CHECKPOINT, safety_max_step_rad="0.2",
                    sim_seed=str(SEED), sim_real_time_factor=SIM_SPEED)
    probe = Probe(ros_domain_id)
    try:
        active = lambda: "active [3]" in ros2(launch_env, "lifecycle", "get", "/policy_node", timeout=120)  # noqa: E731
        assert wait_for(lambda: launch.process.poll() is None and _quietly(active), STARTUP_S, poll_s=2.0), \
            launch.output()[-5000:]
        yield launch, probe
    finally:
        probe.close()
        launch.stop()


def _quietly(check) -> bool:
    try:
        return check()
    except (AssertionError, subprocess.TimeoutExpired):
        return False


def test_sim_launch_runs_a_seeded_episode_to_success(sim_launch, launch_env):
    launch, probe = sim_launch
    assert "process has died" not in launch.output()
    nodes = ros2(launch_env, "node", "list", "--no-daemon", "--spin-time", "5").split()
    assert {"/sim_node", "/policy_node", "/safety_filter_node"} <= set(nodes)
    reply = ros2(launch_env, "service", "call", "/sim/reset", "diffusion_policy_ros/srv/ResetEpisode", f"{{seed: {SEED}}}")
    assert "success=True" in reply
    reply = ros2(launch_env, "service", "call", "/policy/command", "diffusion_policy_ros/srv/PolicyCommand",
                 "{command: 0}")   # START
    assert "success=True" in reply, reply
    solved = wait_for(lambda: any(s.success and s.seed == SEED for s in probe.status), 180.0, poll_s=0.5)
    assert solved, f"seed {SEED} not solved; last status {probe.status[-1:]}\n{launch.output()[-3000:]}"


def test_policy_lifecycle_through_ros2_lifecycle(sim_launch, launch_env):
    assert "active [3]" in ros2(launch_env, "lifecycle", "get", "/policy_node")
    assert "Transitioning successful" in ros2(launch_env, "lifecycle", "set", "/policy_node", "deactivate")
    assert "inactive [2]" in ros2(launch_env, "lifecycle", "get", "/policy_node")
    assert "Transitioning successful" in ros2(launch_env, "lifecycle", "set", "/policy_node", "activate")
    assert "active [3]" in ros2(launch_env, "lifecycle", "get", "/policy_node")


def test_estop_engaged_and_released_with_ros2_service_call(sim_launch, launch_env):
    launch, probe = sim_launch
    n_events = len(probe.events)
    reply = ros2(launch_env, "service", "call", "/safety/estop", "diffusion_policy_ros/srv/EStop",
                 "{engage: true, reason: 'ros2 service call'}")
    assert "engaged=True" in reply, reply
    assert wait_for(lambda: any(e.reason == "estop" and "ros2 service call" in e.message
                                for e in probe.events[n_events:]), 30.0)
    reply = ros2(launch_env, "service", "call", "/safety/estop", "diffusion_policy_ros/srv/EStop",
                 "{engage: false, reason: 'test done'}")
    assert "engaged=False" in reply, reply


def test_parameters_are_described_and_launch_arguments_reach_the_nodes(sim_launch, launch_env):
    describe = ros2_query(launch_env, "param", "describe", "/safety_filter_node", "max_step_rad", "output")
    assert "largest step per trajectory point" in describe and "Read only: true" in describe
    assert "Additional constraints: one of: joint_trajectory, follow_joint_trajectory" in describe
    assert "Double value is: 0.2" in ros2_query(launch_env, "param", "get", "/safety_filter_node", "max_step_rad")
    for node in ("sim_node", "policy_node", "safety_filter_node"):
        declared = set(ros2_query(launch_env, "param", "list", f"/{node}").split())
        wanted = {parameter for n, parameter in graph.launch_arguments("sim").values() if n == node}
        assert wanted <= declared, f"{node} lacks {wanted - declared}"


def test_record_launch_records_and_saves_an_episode(launch_env, own_ros_domain_id, tmp_path):
    """In a domain of its own: the module's sim.launch.py graph (a module fixture) may still run,
    and two sims in one domain publish two clocks (the filter saw joint states 28 s apart)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from diffusion_policy_ros.data.replay_buffer import ReplayBuffer
    from diffusion_policy_ros.nodes.expert_episodes import ExpertEpisodeDriver
    env = dict(launch_env, ROS_DOMAIN_ID=str(own_ros_domain_id))
    launch = Launch(env, tmp_path / "launch.log", "record.launch.py", record_dataset_root=str(tmp_path),
                    record_dataset_name="demos", sim_real_time_factor=SIM_SPEED)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=own_ros_domain_id)
    node = rclpy.create_node("record_operator", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = SpinThread(executor).start()
    try:
        driver = ExpertEpisodeDriver(node)
        driver.wait_until_ready(timeout_s=STARTUP_S)
        outcome = driver.record(3, "pick the cube")
        assert outcome.saved, f"{outcome}\n{launch.output()[-3000:]}"
        driver.wait_for_conversions(timeout_s=120.0)
        dataset = ReplayBuffer.open(str(tmp_path / "demos"))
        assert dataset.n_episodes == 1 and dataset.episode_length(0) == outcome.frames > 10
    finally:
        spinner.stop()
        node.destroy_node()
        context.try_shutdown()
        launch.stop()


def test_a_mistyped_parameter_fails_the_launch_naming_node_key_and_closest(launch_env, tmp_path):
    doc = yaml.safe_load(open(os.path.join(ROOT, "config", "single_arm.yaml")))
    doc["/**/safety_filter_node"]["ros__parameters"]["max_velocty"] = 1.0
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = subprocess.run(["ros2", "launch", graph.PACKAGE, "sim.launch.py", f"config:={config}",
                          f"policy_checkpoint:={CHECKPOINT}"], env=launch_env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    assert "safety_filter_node: unknown parameter 'max_velocty'; did you mean 'max_velocity_rad_s'?" in out.stdout + out.stderr
    assert "process started" not in out.stdout + out.stderr


def test_a_node_started_with_a_mistyped_key_exits_with_the_message(launch_env, tmp_path):
    """The node itself refuses (for launch files of one's own, which do not check the config)."""
    doc = yaml.safe_load(open(os.path.join(ROOT, "config", "single_arm.yaml")))
    doc["/**/sim_node"]["ros__parameters"]["physics_rate"] = 250.0
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = subprocess.run(["ros2", "run", graph.PACKAGE, "sim_node", "--ros-args", "--params-file", str(config)],
                         env=launch_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "sim_node: unknown parameter 'physics_rate'; did you mean 'physics_rate_hz'?" in out.stdout + out.stderr

