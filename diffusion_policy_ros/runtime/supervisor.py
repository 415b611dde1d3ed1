"""Start the nodes a `graph.build_graph` list names as processes, drive their lifecycle, stop them.

Stopping escalates SIGINT -> SIGTERM -> SIGKILL, so a node stuck in its shutdown cannot keep the
graph alive. Ctrl-C and SIGTERM reach the supervising process as KeyboardInterrupt.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from diffusion_policy_ros.runtime.spin_thread import SpinThread


def start_graph(specs, env=None, log_dir: str | None = None) -> list[subprocess.Popen]:
    """One process per NodeSpec; with `log_dir`, each node's output goes to `<name>.log` there."""
    procs = []
    for spec in specs:
        out = open(os.path.join(log_dir, f"{spec.name}.log"), "w") if log_dir else None  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", spec.module, *spec.ros_args(log_dir)], env=env,
                                      stdout=out, stderr=subprocess.STDOUT if out else None,
                                      preexec_fn=_default_sigint))
    return procs


def _default_sigint():
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_graph(procs, timeout: float = 5.0) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            return
        for p in alive:
            p.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in alive):
            time.sleep(0.05)


def exited_nodes(specs, procs) -> list[str]:
    """Names of the graph's nodes whose process has ended."""
    return [s.name for s, p in zip(specs, procs) if p.poll() is not None]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def catch_stop_signals() -> None:
    """Ctrl-C and SIGTERM both stop the graph cleanly (also when started in the background,
    where a shell leaves SIGINT ignored)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _init_without_signal_handlers() -> None:
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    # no rclpy SIGINT handler: Ctrl-C must reach the supervisor as KeyboardInterrupt
    rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)


def manage_lifecycle(node_names: Sequence[str], start: bool = False, timeout: float = 120.0) -> str:
    """configure + activate each lifecycle node (and START the policy); returns '' or an error."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from diffusion_policy_ros.srv import PolicyCommand
    _init_without_signal_handlers()
    node = rclpy.create_node("dpros_lifecycle_manager")
    try:
        for name in node_names:
            client = node.create_client(ChangeState, f"/{name}/change_state")
            if not client.wait_for_service(timeout_sec=timeout):
                return f"{name}: lifecycle service not available"
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
                rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
                if not future.done() or not future.result().success:
                    return f"{name}: transition {transition} failed (see the node's log)"
        if start:
            client = node.create_client(PolicyCommand, "policy/command")
            client.wait_for_service(timeout_sec=timeout)
            future = client.call_async(PolicyCommand.Request(command=PolicyCommand.Request.START))
            rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
            if not future.done() or not future.result().success:
                return "policy START failed"
        return ""
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


@contextlib.contextmanager
def spinning_node(name: str) -> Iterator:
    """An rclpy node whose callbacks run on a background thread while the caller waits on them."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    _init_without_signal_handlers()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = SpinThread(executor, name=f"{name}_spin").start()
    try:
        yield node
    finally:
        spin.stop()
        node.destroy_node()
        rclpy.try_shutdown()


def call_service(client, request, timeout_s: float = 60.0):
    """The response of a service whose node spins elsewhere (see `spinning_node`)."""
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s:.0f} s")
        time.sleep(0.005)
    return future.result()
