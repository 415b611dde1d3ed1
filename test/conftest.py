"""Shared test fixtures: isolated ROS 2 domains so test modules (and parallel runs) never talk
to each other's nodes."""
import os
import random
import signal
import sys

import pytest
from hypothesis import settings

# The property tests run the same examples on every CI run (a failure there is a bug to fix, not a
# coin flip); HYPOTHESIS_PROFILE=explore searches new examples on each run.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


# Fast DDS derives its ports from the domain: 0-232 are usable, 0 is everyone's default.
_DOMAINS = 232
_first_domain = random.Random(os.getpid()).randrange(_DOMAINS)   # parallel runs start apart
_modules_seen: list[str] = []


def _next_domain(owner: str) -> int:
    _modules_seen.append(owner)
    return 1 + (_first_domain + len(_modules_seen)) % _DOMAINS


@pytest.fixture(scope="module")
def ros_domain_id(request):
    """A ROS domain for this test module alone: consecutive modules of one run never share one
    (a domain drawn at random per module collided within a run, and a node another module left
    behind then answered this module's requests)."""
    return _next_domain(request.module.__name__)


@pytest.fixture
def own_ros_domain_id(request):
    """A ROS domain for this test alone, for a test whose graph must not meet the module's graph
    (the module's fixtures may still be running their nodes)."""
    return _next_domain(request.node.nodeid)


# Every process a test starts inherits this mark, orphans of a killed parent included.
RUN_MARK = f"DPROS_TEST_RUN={os.getpid()}"
os.environ["DPROS_TEST_RUN"] = str(os.getpid())


def _marked_processes() -> list[tuple[int, str]]:
    """(pid, command line) of every live process started by this test run, from /proc (Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if RUN_MARK.encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found.append((int(entry), f.read().replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def no_process_outlives_its_module():
    """A node process a module started and did not stop (its test failed half-way, or it outlived
    the launch or supervisor that started it) is killed when the module ends, and named on stderr,
    instead of answering the next modules' requests."""
    yield
    if not sys.platform.startswith("linux"):
        return
    left = []
    for pid, command in _marked_processes():
        try:
            os.kill(pid, signal.SIGKILL)
            left.append(f"{pid}: {command[:160]}")
        except ProcessLookupError:
            continue
    if left:
        print("\nkilled processes the module left running:\n  " + "\n  ".join(left), file=sys.stderr)


@pytest.fixture(scope="module")
def ros_env(ros_domain_id):
    """Environment for node subprocesses of this module: same domain, localhost only."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def rclpy_context(ros_domain_id):
    """An initialised rclpy context of its own (pass `context=` to nodes and executors)."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    context.try_shutdown()
