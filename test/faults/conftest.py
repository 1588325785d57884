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


@pytest.fixture(scope="module")
def nerf_dir(tmp_path_factory):
    """A tiny, intact NeRF model directory (the commands' and the nodes' cases damage copies of it)."""
    import torch

    from inerf_ros.nerf.checkpoint import save_model
    from inerf_ros.nerf.model import NerfMetadata, NerfModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nerf")
    field = {"n_levels": 1, "base_resolution": 4, "max_resolution": 4, "channels": 1, "hidden": 8,
             "geo_features": 1, "sh_degree": 0}
    save_model(NerfModel(NerfMetadata(aabb=[[-1, -1, -1], [1, 1, 1]], n_samples=8, field=field,
                                      occupancy_resolution=4)), path)
    return path
