"""Shared test fixtures: isolated ROS 2 domains so test modules (and parallel runs) never talk
to each other's nodes."""
import os
import random
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


@pytest.fixture(scope="module")
def ros_domain_id(request):
    """A ROS domain for this test module alone (1-100; 0 is everyone's default)."""
    return random.Random(f"{request.module.__name__}-{os.getpid()}").randint(1, 100)


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
