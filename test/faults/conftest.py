"""rclpy fixtures for the fault suite: each test session gets its own ROS domain (as in test/ros)."""
import os
import random

import pytest


@pytest.fixture(scope="session")
def ros_domain_id():
    # 1..101 keeps inside Fast DDS' valid port range; honour an explicit choice from the caller.
    return int(os.environ.get("INERF_TEST_DOMAIN_ID", random.Random(os.getpid()).randint(1, 101)))


@pytest.fixture
def ros_context(ros_domain_id):
    rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (run `make test`, which sets it up)")
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    yield context
    rclpy.shutdown(context=context)
