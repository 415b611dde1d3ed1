"""keyboard_episode_node: start / save / discard demo episodes from the keyboard.

    python -m diffusion_policy_ros.nodes.keyboard_episode_node --ros-args -p task:="pick the cube"

Keys (shown on screen): c = start an episode with the current task text, s = save it,
d or Backspace = discard it, t = type a new task text, q = quit. Reads single key presses from
a terminal, or characters/lines from a pipe (scripts, tests). Calls the recorder's EpisodeControl
service and prints its answer and the recorder status.
"""
from __future__ import annotations

import json
import os
import select
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from diffusion_policy_ros.node_parameters import KEYBOARD_EPISODE_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters

HELP = "[c] start  [s] save  [d/Backspace] discard  [t] task text  [q] quit"
KEYS = {"c": "START", " ": "START", "s": "SAVE", "d": "DISCARD", "\x7f": "DISCARD", "\b": "DISCARD"}


class KeyboardEpisodeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("keyboard_episode_node", **PARAMETER_OPTIONS, **kwargs)
        from diffusion_policy_ros.srv import EpisodeControl
        self.srv = EpisodeControl
        declared = declare_node_parameters(self, KEYBOARD_EPISODE_NODE)
        self.task = declared["task"]
        recorder = declared["recorder"]
        self.client = self.create_client(EpisodeControl, f"{recorder}/episode")
        self.status = {}
        self.create_subscription(String, f"{recorder}/status", self._on_status, 10)

    def _on_status(self, msg: String):
        try:
            self.status = json.loads(msg.data)
        except ValueError:
            pass

    def wait_for_recorder(self, stop: threading.Event) -> None:
        """Tell the operator once the recorder's service is discovered (it can take seconds)."""
        while not stop.is_set() and self.context.ok():
            if self.client.wait_for_service(timeout_sec=0.5):
                print(f"recorder ready ({self.client.srv_name})", flush=True)
                return

    def command(self, name: str, timeout: float = 120.0) -> str:
        # A key pressed while discovery is still under way waits a little instead of failing.
        if not self.client.wait_for_service(timeout_sec=10.0):
            return "recorder not reachable (is demo_recorder_node running?)"
        if name == "START" and not self.task:
            return "no task text yet: press t and type what the demonstration shows"
        done = threading.Event()
        future = self.client.call_async(self.srv.Request(command=getattr(self.srv.Request, name),
                                                         task=self.task))
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            return f"{name}: no answer from the recorder in {timeout:.0f} s"
        res = future.result()
        return f"{'ok' if res.success else 'FAILED'}: {res.message}"


def _key_reader():
    """Yields keys; raw single keys from a terminal, characters from a pipe."""
    if sys.stdin.isatty():
        import termios
        import tty
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while True:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    yield os.read(fd, 1).decode(errors="ignore")
                else:
                    yield None
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    else:
        for line in sys.stdin:
            for ch in line.rstrip("\n"):
                yield ch
        yield "q"


def _read_task(keys) -> str:
    if sys.stdin.isatty():
        import termios
        fd = sys.stdin.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[3] |= termios.ECHO | termios.ICANON
        termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
        try:
            return input("task text: ").strip()
        finally:
            import tty
            tty.setcbreak(fd)
    # From a pipe: the task text runs up to the next ';'.
    text = []
    for ch in keys:
        if ch in (";", None):
            break
        text.append(ch)
    return "".join(text).strip()


def main(args=None):
    rclpy.init(args=args)
    node = executor = spinner = watcher = None
    stop = threading.Event()
    try:
        node = KeyboardEpisodeNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        print(HELP, flush=True)
        print(f"task: {node.task or '(none: press t)'}", flush=True)
        watcher = threading.Thread(target=node.wait_for_recorder, args=(stop,), daemon=True)
        watcher.start()
        keys = _key_reader()
        for key in keys:
            if key is None:
                continue
            if key == "q":
                break
            if key == "t":
                node.task = _read_task(keys)
                print(f"task: {node.task}", flush=True)
            elif key in KEYS:
                print(node.command(KEYS[key]), flush=True)
                if node.status:
                    print(f"  recorder: {node.status.get('state')}, "
                          f"{node.status.get('saved_episodes')} saved this session", flush=True)
            elif key not in ("\n", "\r"):
                print(HELP, flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Stop the spin thread before the interpreter exits: a daemon thread still inside rclpy's
        # wait at exit is killed mid C++ call ("terminate called without an active exception").
        stop.set()
        if watcher is not None:
            watcher.join(timeout=5.0)
        if executor is not None:
            executor.shutdown()
        if spinner is not None:
            spinner.join(timeout=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
