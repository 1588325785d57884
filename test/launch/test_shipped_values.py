"""One home for the shipped values: `inerf-ros replay` (offline and live) and `inerf-ros demo` run the
inerf_node section of config/localize.yaml, as the launched node does.
"""
import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from inerf_ros import config as config_tools
from inerf_ros import demo, params_yaml, replay
from inerf_ros.optim.inerf import OptimizerConfig
from inerf_ros.optim.localizer import LocalizerConfig
from inerf_ros.optim.sampling import SamplingConfig

ROOT = Path(__file__).resolve().parents[2]


def shipped_section() -> dict:
    """inerf_node's parameters as the node reads them from the committed file."""
    return yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())["inerf_node"]["ros__parameters"]


def assert_runs_the_section(config, skip=()):
    section = shipped_section()
    for f in config_tools.fields(type(config)):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        expected = section.get(f.name, default)  # keys the file leaves out: the node keeps the code default
        assert getattr(config, f.name) == expected, f"{type(config).__name__}.{f.name}"


def test_replay_cli_defaults_are_the_inerf_node_section():
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    args = parser.parse_args(["some.mcap", "--report", "out"])
    assert_runs_the_section(config_tools.from_args(OptimizerConfig, args))
    # Each offline column picks its strategy; live replay sends mask_region, which is the section's.
    assert_runs_the_section(config_tools.from_args(SamplingConfig, args), skip=("strategy",))
    assert shipped_section()["strategy"] == "mask_region"
    flags = parser.parse_args(["some.mcap", "--report", "out", "--num-rays", "64", "--solver", "lm"])
    assert (flags.num_rays, flags.solver) == (64, "lm")  # a flag still wins


def test_demo_replays_with_the_inerf_node_section():
    optimizer, sampling = demo.replay_configs()
    assert_runs_the_section(optimizer)
    assert_runs_the_section(sampling)
    _, fewer = demo.replay_configs(num_rays=128)
    assert fewer.num_rays == 128 and fewer.num_rays != shipped_section()["num_rays"]


def test_node_config_reads_every_inerf_node_config_and_rejects_bad_files(tmp_path):
    assert_runs_the_section(params_yaml.node_config(LocalizerConfig))
    path = tmp_path / "params.yaml"
    path.write_text("inerf_node:\n  ros__parameters:\n    learning_rate: 1e-3\n    max_iterations: 7\n")
    config = params_yaml.node_config(OptimizerConfig, path=path)
    assert (config.learning_rate, config.max_iterations) == (0.001, 7)
    assert config.solver == OptimizerConfig().solver
    with pytest.raises(ValueError, match="no posecnn_node.ros__parameters section"):
        params_yaml.node_config(OptimizerConfig, node="posecnn_node", path=path)
    path.write_text("inerf_node:\n  ros__parameters:\n    solver: newton\n")
    with pytest.raises(ValueError, match="solver"):
        params_yaml.node_config(OptimizerConfig, path=path)
