"""Helpers for tests that spin rclpy nodes (a module of its own: `conftest` names are ambiguous)."""
import time


def spin_until(executor, condition, timeout_s=10.0):
    """Spin ``executor`` until ``condition()`` is true; return whether it became true in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if condition():
            return True
    return condition()
