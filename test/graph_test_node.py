"""The test's own node on a started graph's ROS domain: on sim time like the graph, spun in a
thread until the block ends, then destroyed with its context and ROS_DOMAIN_ID put back."""
import contextlib
import os

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from diffusion_policy_ros.runtime.spin_thread import SpinThread


@contextlib.contextmanager
def sim_time_test_node(name: str, domain_id: int):
    old = os.environ.get("ROS_DOMAIN_ID")
    context = node = spin = None
    try:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)   # for manage_lifecycle and ros2 tools called inside
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        node = rclpy.create_node(name, context=context, parameter_overrides=[Parameter("use_sim_time", value=True)])
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin = SpinThread(executor).start()
        yield node
    finally:
        if spin is not None:
            spin.stop()
        if node is not None:
            node.destroy_node()
        if context is not None:
            context.try_shutdown()
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old
