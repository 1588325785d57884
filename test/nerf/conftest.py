"""Shared helpers for the NeRF tests: tiny data sets written into tmp folders."""
from pathlib import Path

import pytest

from nerf_test_utils import REPO_ROOT, SHARED, look_at, write_png, sphere_image, make_sphere_scene  # noqa: F401


@pytest.fixture
def sphere_scene(tmp_path) -> Path:
    return make_sphere_scene(tmp_path / "sphere")
