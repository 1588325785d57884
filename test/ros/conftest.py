"""rclpy fixtures: each test session gets its own ROS domain so parallel runs never cross-talk."""
import os
import random
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run `make test`, which sets it up)")


@pytest.fixture(scope="session")
def ros_domain_id():
    # 1..101 keeps inside Fast DDS' valid port range; honour an explicit choice from the caller.
    return int(os.environ.get("INERF_TEST_DOMAIN_ID", random.Random(os.getpid()).randint(1, 101)))


@pytest.fixture
def ros_context(ros_domain_id):
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    rclpy.shutdown(context=context)


def spin_until(executor, condition, timeout_s=10.0):
    """Spin ``executor`` until ``condition()`` is true; return whether it became true in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if condition():
            return True
    return condition()
