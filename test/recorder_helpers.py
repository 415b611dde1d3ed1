"""Shared by the recorder tests: start demo_recorder_node as a real process, talk to it."""
import os
import subprocess
import sys
import time

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from diffusion_policy_ros.runtime.spin_thread import SpinThread

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = "/demo_recorder_node/episode"
STATUS = "/demo_recorder_node/status"
HARMLESS_COMMAND = 99      # not START, SAVE nor DISCARD: the recorder refuses it and changes nothing


def start_recorder(env, config, params: dict, *, log_path=None, cwd=None, preexec_fn=None):
    """demo_recorder_node with the robot config plus node parameters (an overlay params file:
    node-scoped values in the config beat `-p` overrides)."""
    import tempfile

    import yaml
    overlay = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump({"/**/demo_recorder_node": {"ros__parameters": params}}, overlay)
    overlay.close()
    args = [sys.executable, "-m", "diffusion_policy_ros.nodes.demo_recorder_node", "--ros-args",
            "--params-file", os.path.join(REPO_ROOT, config), "--params-file", overlay.name]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(args, env=env, cwd=cwd or REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=preexec_fn)


class Operator:
    """The person at the keyboard: a client of the recorder's episode service.

    Its node spins on a thread of its own, and nothing is destroyed on the node while it spins:
    rclpy (7.1.5, Jazzy) collects a node's waitables for its wait set, and a subscription destroyed
    from another thread in the meantime leaves its QoS event handler in the list; the executor then
    raises InvalidHandle in `add_to_wait_set` and its thread ends (ros2/rclpy#1284). Every reply
    and message to this process is "lost" from then on. So the status subscription is made once,
    and subscriptions a test adds (`subscribe`) live until `close`."""

    def __init__(self, context):
        import json

        from std_msgs.msg import String

        from diffusion_policy_ros.srv import EpisodeControl
        self.srv = EpisodeControl
        self.node = Node("test_operator", context=context)
        self.client = self.node.create_client(EpisodeControl, SERVICE)
        # The recorder's status messages (JSON dicts, in arrival order; a reliable topic).
        self.statuses: list[dict] = []
        self.node.create_subscription(String, STATUS, lambda m: self.statuses.append(json.loads(m.data)), 10)
        self.executor = MultiThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._closing = False
        self.spin = SpinThread(self.executor).start()

    def check_spinning(self):
        """Fail at once, naming the reason, when the executor thread has ended (otherwise every
        wait below would time out as if the recorder had not answered)."""
        if not self.spin.alive and not self._closing:
            raise AssertionError(f"the test's executor thread ended: {self.spin.error!r}")

    def add_node(self, node):
        self.executor.add_node(node)

    def subscribe(self, msg_type, topic, callback, qos=10):
        """A subscription on the operator's node, kept until close (see the class docstring)."""
        return self.node.create_subscription(msg_type, topic, callback, qos)

    def wait_for_recorder(self, timeout=60.0, proc=None):
        """Until a live recorder answers: its status topic ticks (a killed recorder's service can
        linger in discovery for a while and would swallow requests). The timeout is generous: on
        a loaded machine start-up alone has taken over 30 s."""
        since = len(self.statuses)
        deadline = time.monotonic() + timeout
        service_seen = False
        unanswered = 0
        while time.monotonic() < deadline:
            self.check_spinning()
            # A harmless request (an unknown command, refused whatever the state) until one is
            # answered: a ready service only means our requests reach it; its answers can
            # still be lost while discovery of the way back is under way (slow on a loaded
            # machine), and a request left unanswered may still arrive later.
            if len(self.statuses) > since and self.client.wait_for_service(timeout_sec=1.0):
                service_seen = True
                if answer(self.client, self.srv.Request(command=HARMLESS_COMMAND), 5.0, self.check_spinning):
                    return
                unanswered += 1
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"recorder exited with {proc.returncode}")
            time.sleep(0.2)
        raise AssertionError(f"recorder never came up within {timeout:.0f} s: {len(self.statuses) - since} "
                             f"status messages, service {'seen' if service_seen else 'never seen'}, "
                             f"{unanswered} requests unanswered")

    def wait_status(self, predicate, timeout=60.0, since=0):
        """The first status message (from index `since` on) satisfying predicate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_spinning()
            for status in self.statuses[since:]:
                if predicate(status):
                    return status
            time.sleep(0.02)
        raise AssertionError(f"no recorder status matched in {timeout:.0f} s; last: "
                             f"{self.statuses[-1] if self.statuses else None}")

    def record_frames(self, frames, timeout=60.0):
        """Until the episode being recorded has at least `frames` frames."""
        since = len(self.statuses)
        return self.wait_status(lambda s: s["state"] == "recording" and s["frames"] >= frames, timeout, since)

    def call(self, command, task="", timeout=60.0):
        req = self.srv.Request(command=getattr(self.srv.Request, command), task=task)
        future = self.client.call_async(req)
        deadline = time.monotonic() + timeout
        while not future.done():
            self.check_spinning()
            if time.monotonic() > deadline:
                raise AssertionError(f"{command} timed out")
            time.sleep(0.01)
        return future.result()

    def close(self):
        self._closing = True
        self.spin.stop()
        self.node.destroy_node()


def answer(client, request, timeout, check=None):
    """The service's answer, or None when none came within timeout seconds. `check` (e.g.
    Operator.check_spinning) runs while waiting and may raise."""
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            client.remove_pending_request(future)
            return None
        time.sleep(0.01)
    return future.result()


def call_idempotent(client, request, timeout=60.0, attempt_s=5.0, check=None):
    """Call a service whose request can safely be repeated, asking again when an answer is lost
    (a service's replies can be dropped until discovery of the reply path has finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = answer(client, request, attempt_s, check)
        if result is not None:
            return result
    raise AssertionError(f"no answer from {client.srv_name} in {timeout:.0f} s")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_dataset(path, episodes: int, timeout: float = 120.0):
    """The dataset at `path` once it holds `episodes` committed episodes (conversion runs in a
    process of its own after SAVE)."""
    from diffusion_policy_ros.data.replay_buffer import DatasetError, ReplayBuffer
    deadline = time.monotonic() + timeout
    count = None
    while time.monotonic() < deadline:
        try:
            dataset = ReplayBuffer.open(str(path))
            count = dataset.n_episodes
            if count >= episodes:
                return dataset
        except DatasetError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{path}: {count} episodes converted after {timeout:.0f} s, expected {episodes}")
