"""One dataclass feeds CLI flags (and ROS parameters, tested in test/ros)."""
import argparse
import dataclasses

import pytest

from inerf_ros import config


@dataclasses.dataclass
class DemoConfig:
    iterations: int = config.option(100, "optimizer iterations per estimate", range=(1, 10000))
    sampling: str = config.option("random", "ray sampling strategy", choices=("random", "mask_region"))
    learning_rate: float = config.option(0.01, "Adam step size", range=(0.0, 1.0))
    verbose: bool = config.option(False, "print more")
    classes: list = config.option([], "class names to use (empty: all)")


def test_flags_default_and_override():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, DemoConfig)
    argv = ["--iterations", "7", "--sampling", "mask_region", "--verbose", "--classes", "mug", "can"]
    parsed = config.from_args(DemoConfig, parser.parse_args(argv))
    assert parsed == DemoConfig(7, "mask_region", 0.01, True, ["mug", "can"])
    assert config.from_args(DemoConfig, parser.parse_args([])) == DemoConfig()


def test_help_comes_from_the_dataclass():
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, DemoConfig)
    text = parser.format_help()
    assert "--learning-rate" in text and "Adam step size" in text and "(default: 0.01)" in text


def test_validation_names_the_field():
    with pytest.raises(ValueError, match="iterations=0 is outside"):
        config.validate(DemoConfig(iterations=0))
    with pytest.raises(ValueError, match="sampling='grid' is not one of"):
        config.from_dict(DemoConfig, {"sampling": "grid"})
    with pytest.raises(ValueError, match="unknown DemoConfig keys"):
        config.from_dict(DemoConfig, {"iteratoins": 5})
