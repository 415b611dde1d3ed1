"""Polling for a condition that real nodes make true asynchronously (shared by the node tests)."""
import time


def wait_for(predicate, timeout=10.0, poll_s=0.01):
    """True as soon as predicate() is, False after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False
