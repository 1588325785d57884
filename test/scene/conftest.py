"""A small rendered scene shared by the scene tests (rendered once per session)."""
import pytest

from inerf_ros.scene.config import load_scene_config

from scene_testdata import SMALL


@pytest.fixture(scope="session")
def small_config():
    return load_scene_config(None, SMALL)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory, small_config):
    from inerf_ros.scene.commands import make_scene

    out = tmp_path_factory.mktemp("scene") / "world"
    make_scene(small_config, out, progress=False)
    return out
