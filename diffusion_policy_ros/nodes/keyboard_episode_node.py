"""keyboard_episode_node: the operator console for recording demonstrations.

    python -m diffusion_policy_ros.nodes.keyboard_episode_node --ros-args -p task:="pick the cube"

Keys (shown on screen): c = start an episode with the current task text, s = save it,
d or Backspace = discard it, r = reset the scene (`reset_service`, the sim's /sim/reset), t = type
a new task text, q = quit. Reads single key presses from a terminal, or characters/lines from a
pipe (scripts, tests). Shows the recorder's state, elapsed time, frames, drops and the last
safety event on one line, redrawn in place on a terminal (a new line at each change through a
pipe), and the recorder's answer to each key.

Parameters: task, recorder (default /demo_recorder_node), reset_service (default /sim/reset),
reset_seed (the first seed a reset asks for; each reset takes the next).
"""
from __future__ import annotations

import os
import select
import shutil
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import String

from diffusion_policy_ros.node_parameters import KEYBOARD_EPISODE_NODE
from diffusion_policy_ros.nodes._parameters import PARAMETER_OPTIONS, declare_node_parameters
from diffusion_policy_ros.nodes._robot_params import now_seconds
from diffusion_policy_ros.runtime.spin_thread import SpinThread
from diffusion_policy_ros.teleop.console import KEYS_HELP, SafetyNote, changed, parse_status, status_line

KEYS = {"c": "START", " ": "START", "s": "SAVE", "d": "DISCARD", "\x7f": "DISCARD", "\b": "DISCARD"}
BUSY_STATES = ("recording", "saving")  # conversion runs behind: a new episode may start
REFRESH_S = 0.5


class KeyboardEpisodeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("keyboard_episode_node", **PARAMETER_OPTIONS, **kwargs)
        p = declare_node_parameters(self, KEYBOARD_EPISODE_NODE)
        from diffusion_policy_ros.msg import SafetyEvent
        from diffusion_policy_ros.srv import EpisodeControl, ResetEpisode
        self.srv = EpisodeControl
        self.reset_srv = ResetEpisode
        self.task = p["task"]
        recorder = p["recorder"]
        self.client = self.create_client(EpisodeControl, f"{recorder}/episode")
        self.reset_client = self.create_client(ResetEpisode, p["reset_service"])
        self.next_seed = p["reset_seed"]
        self.status: dict | None = None
        self.safety: SafetyNote | None = None
        self.create_subscription(String, f"{recorder}/status", self._on_status, 10)
        self.create_subscription(SafetyEvent, "safety/events", self._on_safety, QoSProfile(depth=50))

    def _on_status(self, msg: String):
        status = parse_status(msg.data)
        if status is not None:
            self.status = status

    def _on_safety(self, msg):
        # Aged by arrival on this node's clock: the event's stamp may be sim time.
        self.safety = SafetyNote(msg.arm, msg.reason, int(msg.action), now_seconds(self))

    def wait_for_recorder(self, stop: threading.Event, say) -> None:
        """Tell the operator once the recorder's service is discovered (it can take seconds)."""
        while not stop.is_set() and self.context.ok():
            if self.client.wait_for_service(timeout_sec=0.5):
                say(f"recorder ready ({self.client.srv_name})")
                return

    def _call(self, client, request, timeout: float):
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        return future.result() if done.wait(timeout) else None

    def command(self, name: str, timeout: float = 120.0) -> str:
        # A key pressed while discovery is still under way waits a little instead of failing.
        if not self.client.wait_for_service(timeout_sec=10.0):
            return "recorder not reachable (is demo_recorder_node running?)"
        if name == "START" and not self.task:
            return "no task text yet: press t and type what the demonstration shows"
        res = self._call(self.client, self.srv.Request(command=getattr(self.srv.Request, name), task=self.task),
                         timeout)
        if res is None:
            return f"{name}: no answer from the recorder in {timeout:.0f} s"
        return f"{'ok' if res.success else 'FAILED'}: {res.message}"

    def reset_scene(self, timeout: float = 60.0) -> str:
        state = (self.status or {}).get("state")
        if state in BUSY_STATES:
            return f"the recorder is {state}: save (s) or discard (d) the episode before resetting the scene"
        # As long as for the recorder: a sim started with the graph can come up after the recorder.
        if not self.reset_client.wait_for_service(timeout_sec=10.0):
            return (f"no {self.reset_client.srv_name} service after 10 s (a real robot?): put the scene back "
                    "by hand, "
                    "jog the arm to its start pose, then press c")
        seed = self.next_seed
        res = self._call(self.reset_client, self.reset_srv.Request(seed=seed), timeout)
        if res is None:
            return f"reset: no answer from {self.reset_client.srv_name} in {timeout:.0f} s"
        if res.success:
            self.next_seed += 1
        return f"{'ok' if res.success else 'FAILED'}: reset ({res.message})"


class Console:
    """The operator's screen: answers on their own lines and the status line, redrawn in place
    on a terminal; through a pipe the status is printed as a new line whenever it changes."""

    def __init__(self, node: KeyboardEpisodeNode, stream=sys.stdout):
        self.node = node
        self.stream = stream
        self.tty = stream.isatty()
        self._lock = threading.Lock()
        self._shown: dict | None = None
        self._line_drawn = False

    def say(self, text: str) -> None:
        with self._lock:
            self._clear()
            self.stream.write(text + "\n")
            self._draw()

    def refresh(self) -> None:
        with self._lock:
            if self.tty:
                self._clear()
                self._draw()
            elif changed(self._shown, self.node.status):
                self._shown = dict(self.node.status or {})
                self.stream.write(f"status: {self._line()}\n")
                self.stream.flush()

    def _line(self) -> str:
        return status_line(self.node.status, self.node.safety, now_seconds(self.node))

    def _clear(self) -> None:
        if self.tty and self._line_drawn:
            self.stream.write("\r\x1b[K")
            self._line_drawn = False

    def _draw(self) -> None:
        if self.tty:
            width = shutil.get_terminal_size((120, 24)).columns
            self.stream.write(self._line()[:max(20, width - 1)])
            self._line_drawn = True
        self.stream.flush()

    def prompt(self, label: str) -> str:
        """A line of text typed by the operator (the status line waits meanwhile)."""
        with self._lock:
            self._clear()
            self.stream.flush()
            return input(label)

    def close(self) -> None:
        with self._lock:
            self._clear()
            self.stream.flush()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(REFRESH_S):
            self.refresh()


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


def _read_task(keys, console: Console) -> str:
    if sys.stdin.isatty():
        import termios
        fd = sys.stdin.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[3] |= termios.ECHO | termios.ICANON
        termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
        try:
            return console.prompt("task text: ").strip()
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


def _handle(key: str, keys, node: KeyboardEpisodeNode, console: Console) -> None:
    if key == "t":
        node.task = _read_task(keys, console)
        console.say(f"task: {node.task}")
    elif key == "r":
        console.say("resetting the scene...")
        console.say(node.reset_scene())
    elif key in KEYS:
        if KEYS[key] == "SAVE":
            console.say("saving...")
        console.say(node.command(KEYS[key]))
    elif key not in ("\n", "\r"):
        console.say(KEYS_HELP)


def main(args=None):
    rclpy.init(args=args)
    node = executor = spinner = watcher = display = None
    stop = threading.Event()
    try:
        node = KeyboardEpisodeNode()
        console = Console(node)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = SpinThread(executor).start()
        console.say(KEYS_HELP)
        console.say(f"task: {node.task or '(none: press t)'}")
        watcher = threading.Thread(target=node.wait_for_recorder, args=(stop, console.say), daemon=True)
        watcher.start()
        display = threading.Thread(target=console.run, args=(stop,), daemon=True)
        display.start()
        keys = _key_reader()
        for key in keys:
            if key is None:
                continue
            if key == "q":
                break
            _handle(key, keys, node, console)
        console.close()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Stop the spin thread before the interpreter exits: a daemon thread still inside rclpy's
        # wait at exit is killed mid C++ call ("terminate called without an active exception").
        stop.set()
        for thread in (watcher, display):
            if thread is not None:
                thread.join(timeout=5.0)
        if spinner is not None:
            spinner.stop(timeout_s=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
