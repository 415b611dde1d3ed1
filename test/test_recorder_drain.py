"""The recorder's subscriptions take everything queued each time the executor calls them.

rclpy's executors take one message per subscription per wait; with four cameras in the same
wait loop a 200 Hz joint stream fell behind and lost messages (`dpros bench record`, 3 x
640x480 + depth: 1658 of 12007 joint states lost in one 60 s episode). Here a real publisher
queues a burst on a real subscription before the executor runs, and one executor turn must
hand all of it to the recorder, in order, as the serialized bytes it was sent as.
"""
import time

import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState

from diffusion_policy_ros.nodes.demo_recorder_node import _Draining

BURST = 300


@pytest.fixture
def node(rclpy_context):
    node = Node("drain_test", context=rclpy_context)
    yield node
    node.destroy_node()


def test_one_executor_turn_takes_the_whole_queued_burst(node, rclpy_context):
    qos = QoSProfile(depth=BURST, reliability=ReliabilityPolicy.RELIABLE)
    received: list[bytes] = []
    callback = _Draining(received.append)
    callback.subscription = node.create_subscription(JointState, "/drain_test/joint_states", callback, qos, raw=True)
    publisher = node.create_publisher(JointState, "/drain_test/joint_states", qos)
    deadline = time.monotonic() + 10
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.get_subscription_count() == 1, "the subscription was not discovered"
    for k in range(BURST):
        publisher.publish(JointState(name=["j"], position=[float(k)]))
    time.sleep(1.0)   # delivered into the subscription's queue by the middleware's own threads

    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        executor.spin_once(timeout_sec=5.0)
    finally:
        executor.remove_node(node)
        executor.shutdown()
    assert all(isinstance(data, bytes) for data in received)
    positions = [deserialize_message(data, JointState).position[0] for data in received]
    assert positions == [float(k) for k in range(BURST)], f"one turn took {len(positions)} of {BURST}"


def test_an_empty_queue_ends_the_drain_after_the_message_it_was_called_with(node, rclpy_context):
    received: list[bytes] = []
    callback = _Draining(received.append)
    callback.subscription = node.create_subscription(JointState, "/drain_test/alone", callback, 10, raw=True)
    callback(b"\x00\x01\x00\x00 not taken from the queue")
    assert received == [b"\x00\x01\x00\x00 not taken from the queue"]
