"""Every message and service of the package crosses a real ROS 2 graph between two nodes intact."""
import threading
import time

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from diffusion_policy_ros import msg as dp_msg
from diffusion_policy_ros import srv as dp_srv
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from std_msgs.msg import Header

MESSAGES = ["ActionChunk", "PolicyStatus", "SafetyEvent", "TactileArray", "TaskStatus"]
SERVICES = ["EpisodeControl", "EStop", "PolicyCommand", "ResetEpisode"]


def filled(msg_type, seed=3):
    """An instance with every field set to a non-default value derived from `seed`."""
    instance = msg_type()
    for i, (name, type_name) in enumerate(instance.get_fields_and_field_types().items()):
        value = _value_for(type_name, seed + i)
        setattr(instance, name, value)
    return instance


def _value_for(type_name, k):
    if type_name.startswith("sequence<"):
        inner = type_name[len("sequence<"):-1]
        return [_value_for(inner, k + j) for j in range(3)]
    if type_name == "string":
        return f"value-{k}"
    if type_name == "boolean":
        return True
    if type_name.startswith(("float", "double")):
        return k + 0.25
    if type_name.startswith(("uint", "int", "octet")):
        return k % 7 + 1
    if type_name == "std_msgs/Header":
        header = Header(frame_id=f"frame-{k}")
        header.stamp.sec, header.stamp.nanosec = 1700000000 + k, 123456789
        return header
    if type_name == "builtin_interfaces/Duration":
        from builtin_interfaces.msg import Duration
        return Duration(sec=k, nanosec=500)
    if type_name == "builtin_interfaces/Time":
        from builtin_interfaces.msg import Time
        return Time(sec=1700000000 + k, nanosec=250)
    raise AssertionError(f"no test value for field type {type_name}")


def assert_same(a, b, path=""):
    """Field-by-field equality (test values are exact in float32, so no tolerance is needed)."""
    for name in a.get_fields_and_field_types():
        va, vb = getattr(a, name), getattr(b, name)
        if hasattr(va, "get_fields_and_field_types"):
            assert_same(va, vb, f"{path}{name}.")
        elif isinstance(va, (str, bool, int, float)):
            assert va == vb, f"{path}{name}: {va!r} != {vb!r}"
        else:
            assert list(va) == list(vb), f"{path}{name}: {list(va)!r} != {list(vb)!r}"


@pytest.fixture(scope="module")
def graph(rclpy_context):
    executor = MultiThreadedExecutor(context=rclpy_context)
    talker = Node("interface_talker", context=rclpy_context)
    listener = Node("interface_listener", context=rclpy_context)
    executor.add_node(talker)
    executor.add_node(listener)
    thread = SpinThread(executor).start()
    yield talker, listener
    thread.stop()
    talker.destroy_node()
    listener.destroy_node()


@pytest.mark.parametrize("name", MESSAGES)
def test_message_round_trips_over_a_topic(graph, name):
    talker, listener = graph
    msg_type = getattr(dp_msg, name)
    received = []
    got = threading.Event()
    sub = listener.create_subscription(msg_type, f"roundtrip/{name}", lambda m: (received.append(m), got.set()), 10)
    pub = talker.create_publisher(msg_type, f"roundtrip/{name}", 10)
    sent = filled(msg_type)
    deadline = time.monotonic() + 10.0
    while not got.is_set() and time.monotonic() < deadline:
        pub.publish(sent)
        got.wait(0.1)
    assert received, f"{name} never arrived"
    assert_same(sent, received[0])
    # pub and sub are not destroyed here: destroyed while the executor spins on its thread they
    # can end that thread (ros2/rclpy#1284, see recorder_helpers.Operator); they go with the nodes.


@pytest.mark.parametrize("name", SERVICES)
def test_service_round_trips_request_and_response(graph, name):
    talker, listener = graph
    srv_type = getattr(dp_srv, name)
    seen_requests = []

    def handle(request, response):
        seen_requests.append(request)
        for field in response.get_fields_and_field_types():
            setattr(response, field, getattr(filled(srv_type.Response, seed=11), field))
        return response

    server = listener.create_service(srv_type, f"roundtrip/{name}", handle)
    client = talker.create_client(srv_type, f"roundtrip/{name}")
    assert client.wait_for_service(timeout_sec=10.0)
    request = filled(srv_type.Request)
    future = client.call_async(request)
    deadline = time.monotonic() + 10.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), f"{name} got no response"
    assert_same(request, seen_requests[0])
    assert_same(filled(srv_type.Response, seed=11), future.result())


def test_interface_constants_are_distinct():
    assert len({dp_srv.EpisodeControl.Request.START, dp_srv.EpisodeControl.Request.SAVE,
                dp_srv.EpisodeControl.Request.DISCARD}) == 3
    assert len({dp_msg.PolicyStatus.STATE_IDLE, dp_msg.PolicyStatus.STATE_RUNNING,
                dp_msg.PolicyStatus.STATE_HOLDING, dp_msg.PolicyStatus.STATE_ERROR}) == 4
