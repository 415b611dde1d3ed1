"""policy_node: a lifecycle node that turns synchronized sensor streams into joint commands.

    python -m diffusion_policy_ros.nodes.policy_node --ros-args --params-file config/single_arm.yaml

configure: load `checkpoint` and check it against the robot config (policy/deploy.py). activate:
start the inference thread; commands go out after `policy/command` START (or start_on_activate).
STOP / deactivate: no more commands, the safety filter holds. Inputs (policy_inputs.py) are
aligned by stamp; a newer complete observation wakes the inference thread, which runs the
ROS-free ControlLoop (policy/control_loop.py: hold on stale inputs, prime a streaming warm start,
infer when due). Outputs (policy_outputs.py): per arm a JointTrajectory on `policy_topic`, or one
Float64MultiArray per control period (output:=float64_multi_array); `policy/action_chunk` with
the time each stage took, `policy/status`, `/diagnostics`.
"""
from __future__ import annotations

import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile

from diffusion_policy_ros.msg import ActionChunk, PolicyStatus
from diffusion_policy_ros.node_parameters import POLICY_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters, parameter_values
from diffusion_policy_ros.nodes._robot_params import responsive_threads
from diffusion_policy_ros.nodes._ros_convert import to_time
from diffusion_policy_ros.nodes.policy_inputs import PolicyInputs
from diffusion_policy_ros.nodes.policy_outputs import action_chunk_msg, check_output, diagnostics_msg, make_output
from diffusion_policy_ros.policy.control_loop import ControlLoop, LoopState
from diffusion_policy_ros.srv import PolicyCommand
from diffusion_policy_ros.sync.rates import CommandRates


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("policy_node", **PARAMETER_OPTIONS, **kwargs)
        declared = declare_node_parameters(self, POLICY_NODE)
        self.config = declared.robot
        self._read_settings()
        self.start_on_activate = declared["start_on_activate"]
        self.status_rate_hz = declared["status_rate_hz"]
        self.executor_kind = declared["executor"]
        self.period = 1.0 / self.config.control_rate_hz
        self.policy = self.inputs = self.output = self.loop = None
        self._unconfigured = (PolicyStatus.STATE_UNCONFIGURED, "not configured")   # state and message
        self._lock = threading.Lock()           # the loop's state: inference thread vs commands
        self._observed = threading.Event()      # a newer synchronized observation is complete
        self._observed_at = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rates = CommandRates()
        self._status = self.create_publisher(PolicyStatus, "policy/status", 10)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(PolicyCommand, "policy/command", self._on_command)
        self.create_timer(1.0 / self.status_rate_hz, self._publish_status)

    def _read_settings(self):
        """Parameters a configure transition applies (read again on every configure)."""
        p = parameter_values(self, POLICY_NODE)
        self.checkpoint, self.output_kind, self.sampler = p["checkpoint"], p["output"], p["sampler"]
        self.sync_tolerance_s, self.stale_after_s = p["sync_tolerance_s"], p["stale_after_s"]
        self.denoising_steps, self.device = p["denoising_steps"], p["device"]   # [] = the checkpoint's levels
        self.ahead_levels = p["ahead_levels"]                                   # -1 = the checkpoint's
        self.image_transport, self.torch_threads = p["image_transport"], p["torch_threads"]
        self.compile = p["compile"]

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def state(self) -> int:
        return int(self.loop.state) if self.loop is not None else self._unconfigured[0]

    @property
    def message(self) -> str:
        return self.loop.message if self.loop is not None else self._unconfigured[1]

    # ---- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state):
        from diffusion_policy_ros.policy.deploy import load_for_robot
        try:
            self._read_settings()
            check_output(self.output_kind)
            started = time.perf_counter()
            self.policy = load_for_robot(self.checkpoint, self.config, self.device, self.sampler,
                                         self.denoising_steps, self.torch_threads,
                                         compile_unet=self.compile, ahead_levels=self.ahead_levels)
            self.inputs = PolicyInputs(self, self.config, self.policy.config.obs_shapes, self.image_transport,
                                       self.sync_tolerance_s, self.stale_after_s, self._on_observation)
        except Exception as e:  # a clear message and a failed transition, never a half-configured node
            self._unconfigured = (PolicyStatus.STATE_ERROR, f"configure failed: {e}")
            self.get_logger().error(self.message)
            self.policy = self.inputs = None
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"loaded {self.checkpoint} on {self.policy.device} (with warm-up "
                               f"{time.perf_counter() - started:.3f} s)")
        self.output = make_output(self.output_kind, self, self.config, self._rates)
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, "policy/action_chunk", QoSProfile(depth=10))
        self.loop = ControlLoop(self.policy, self.inputs, self.output, self.config.control_rate_hz, self.now,
                                self._publish_chunk)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        self._stop.clear()
        self._thread = threading.Thread(target=self._inference_loop, name="policy_inference", daemon=True)
        self._thread.start()
        self.output.start()
        if self.start_on_activate:
            self.loop.start()
        self.loop.message = "active" + (", commanding" if self.loop.running else "; call policy/command START")
        return super().on_activate(state)

    def on_deactivate(self, state):
        self._halt()
        self.loop.state, self.loop.message = LoopState.IDLE, "deactivated"
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._halt()
        self.inputs.destroy()
        self.output.destroy()  # a later configure creates them again (maybe with other settings)
        self.destroy_lifecycle_publisher(self._chunk_pub)
        self.policy = self.inputs = self.output = self.loop = None
        self._unconfigured = (PolicyStatus.STATE_UNCONFIGURED, "cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self._halt()
        return TransitionCallbackReturn.SUCCESS

    def _halt(self):
        if self.loop is not None:
            self.loop.stop()
        self._stop.set()
        self._observed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None
        if self.output is not None:
            self.output.stop()

    # ---- inference thread ------------------------------------------------------------------
    def _on_observation(self):
        self._observed_at = time.perf_counter()
        self._observed.set()

    def _inference_loop(self):
        while not self._stop.is_set():
            # Woken by each newer observation; without one, still looks once a period (staleness).
            self._observed.wait(self.period)
            self._observed.clear()
            if self._stop.is_set():
                break
            started, observed_at = time.perf_counter(), self._observed_at
            try:
                with self._lock:
                    again = self.loop.step(started, observed_at)
            except Exception as e:  # the robot holds (no commands) and the status says why
                self.loop.fail(e)
                self.get_logger().error(f"{self.loop.message}; commands stopped until the next START")
                again = False
            if again:
                self._observed.set()

    def _publish_chunk(self, stamp, rows, report, stages):
        self._chunk_pub.publish(action_chunk_msg(self.config.joint_names, self.period, stamp, rows, report, stages))

    # ---- commands and status ---------------------------------------------------------------
    def _on_command(self, request, response):
        loop = self.loop if self._thread is not None else None   # configured and active
        if request.command == PolicyCommand.Request.START:
            response.success = loop is not None
            response.message = "commanding" if loop else "not active: configure and activate the node first"
            if loop:
                loop.start()
                self._observed.set()  # act on the current observation, not the next one
        elif request.command == PolicyCommand.Request.STOP:
            if self.loop is not None:
                self.loop.stop()
            response.success, response.message = True, "stopped; the safety filter holds the robot"
        elif request.command == PolicyCommand.Request.RESET:
            response.success, response.message = self.loop is not None, "reset"
            if self.loop is not None:
                with self._lock:
                    self.inputs.clear()  # the new episode's history holds none of the last one's samples
                    self.loop.reset()
        else:
            response.success, response.message = False, f"unknown command {request.command}"
        response.state = self.state
        return response

    def _publish_status(self):
        loop, inputs, now = self.loop, self.inputs, self.now()
        message, stale = self.message, loop.stale if loop is not None else ()
        p50, p99, worst = loop.latency_percentiles() if loop is not None else (0.0, 0.0, 0.0)
        msg = PolicyStatus(state=self.state, message=message, control_rate=self._rates.setpoint_rate(now),
                           trajectory_rate=self._rates.message_rate(now), target_control_rate=self.config.control_rate_hz,
                           latency_p50=p50, latency_p99=p99, latency_max=worst,
                           nfe_per_action=loop.nfe_per_action if loop is not None else 0.0,
                           stale_inputs=list(stale), chunks_computed=loop.chunks if loop is not None else 0)
        observed = inputs.complete_stamp() if inputs is not None else None
        if observed is not None:
            msg.observation_stamp = to_time(observed)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status.publish(msg)
        self._diagnostics.publish(diagnostics_msg(f"{self.get_name()}: policy", msg))


def spin(node, kind: str) -> None:
    """`events`: rclpy's EventsExecutor, which queues ready callbacks in C++ instead of rebuilding a
    Python wait set on every wake-up (that was most of this node's CPU; ~230 messages/s come in);
    `single_threaded` where it is missing (rclpy before Jazzy) or misbehaves."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        kind = "single_threaded"
    if kind != "events":
        rclpy.spin(node)
        return
    executor = EventsExecutor()
    executor.add_node(node)
    while rclpy.ok():   # its spin() never ran a callback with the Jazzy wheels here; spin_once does
        executor.spin_once(timeout_sec=0.5)


def main(args=None):
    # The inference thread returns from a torch call hundreds of times per sample and must win
    # the GIL back from the executor thread each time: a short switch interval lets it.
    responsive_threads()
    rclpy.init(args=args)
    node = None
    try:
        node = PolicyNode()
        spin(node, node.executor_kind)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._halt()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
