"""The live pipeline's node list and launch arguments: one source of truth.

``launch/localize.launch.py`` (``ros2 launch inerf_ros localize.launch.py``) and
``inerf-ros launch localize`` (for environments without ``ros2 launch``, such as ROS 2 from PyPI)
both build the same nodes, with the same parameter file and overrides, from these tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

from inerf_ros import paths


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    """Node name = executable name = the YAML section of its parameters."""
    module: str
    cls: str
    parameters: dict
    """ROS parameter -> launch argument that overrides it."""
    configs: tuple = ()
    """The config dataclasses ("module:Class") whose fields are the node's parameters."""
    condition: str | None = None
    """Launch argument that must be true for the node to run."""


@dataclasses.dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


NODES = [
    NodeSpec("posecnn_node", "inerf_ros.nodes.posecnn_node", "PosecnnNode",
             {"model_dir": "posecnn_model", "device": "device"},
             configs=("inerf_ros.nodes.posecnn_node:PosecnnNodeConfig",
                      "inerf_ros.posecnn.refine:SilhouetteRefineConfig"), condition="use_posecnn"),
    NodeSpec("initializer_node", "inerf_ros.nodes.initializer_node", "InitializerNode", {},
             configs=("inerf_ros.nodes.initializer_node:InitializerNodeConfig",
                      "inerf_ros.initializer:InitializerConfig"), condition="use_posecnn"),
    NodeSpec("inerf_node", "inerf_ros.nodes.inerf_node", "InerfNode",
             {"model_dir": "nerf_model", "device": "device", "use_prior": "use_posecnn"},
             configs=("inerf_ros.nodes.inerf_node:InerfNodeConfig", "inerf_ros.optim.inerf:OptimizerConfig",
                      "inerf_ros.optim.sampling:SamplingConfig", "inerf_ros.optim.localizer:LocalizerConfig")),
]

# Topic the nodes use (relative) -> launch argument with the absolute topic.
REMAPPINGS = {"image_raw": "image_topic", "camera_info": "camera_info_topic"}
# TF relative, so that the stack works under a namespace (as nav2 does).
TF_REMAPPINGS = [("/tf", "tf"), ("/tf_static", "tf_static")]


def config_classes(spec: NodeSpec) -> list[type]:
    out = []
    for ref in spec.configs:
        module, name = ref.split(":")
        out.append(getattr(importlib.import_module(module), name))
    return out


def launch_arguments() -> list[LaunchArgument]:
    return [
        LaunchArgument("params_file", str(paths.config_file("localize.yaml")),
                       "YAML with the parameters of every node (sections named after the nodes)"),
        LaunchArgument("nerf_model", str(paths.model_dir("nerf_tabletop")), "NeRF model directory"),
        LaunchArgument("posecnn_model", str(paths.model_dir("posecnn_tabletop")), "PoseCNN model directory"),
        LaunchArgument("device", "cpu", "torch device of every node: cpu, cuda or cuda:N"),
        LaunchArgument("use_posecnn", "true", "run PoseCNN + initializer for priors (false: tracking from an "
                                              "external prior on camera_prior)"),
        LaunchArgument("image_topic", "/camera/image_raw", "camera images (sensor_msgs/Image)"),
        LaunchArgument("camera_info_topic", "/camera/camera_info", "camera intrinsics (sensor_msgs/CameraInfo)"),
        LaunchArgument("use_sim_time", "false", "use /clock (bag replay)"),
        LaunchArgument("log_level", "info", "log level of every node"),
    ]


def _truthy(value: str) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def resolve(values: dict[str, str]) -> tuple[list[tuple[NodeSpec, dict]], list[tuple[str, str]]]:
    """Nodes to start with their parameter overrides, and the remappings, for argument ``values``."""
    nodes = []
    for spec in NODES:
        if spec.condition and not _truthy(values[spec.condition]):
            continue
        overrides = {param: values[arg] for param, arg in spec.parameters.items()}
        if "use_prior" in overrides:
            overrides["use_prior"] = _truthy(overrides["use_prior"])
        overrides["use_sim_time"] = _truthy(values["use_sim_time"])
        nodes.append((spec, overrides))
    remaps = [(topic, values[arg]) for topic, arg in REMAPPINGS.items()] + TF_REMAPPINGS
    return nodes, remaps


# -- `inerf-ros launch localize` -----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("launch_name", choices=["localize"], help="what to launch (the localize pipeline)")
    for arg in launch_arguments():
        parser.add_argument("--" + arg.name.replace("_", "-"), dest=arg.name, default=arg.default,
                            help=f"{arg.description} (default: {arg.default})")


def run(args) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.parameter import Parameter

    values = {arg.name: getattr(args, arg.name) for arg in launch_arguments()}
    nodes_to_start, remaps = resolve(values)
    ros_args = ["--ros-args", "--params-file", values["params_file"], "--log-level", values["log_level"]]
    for topic, target in remaps:
        ros_args += ["-r", f"{topic}:={target}"]
    with rclpy.init(args=["inerf-ros", *ros_args]):
        executor = MultiThreadedExecutor(num_threads=4)
        nodes = []
        try:
            for spec, overrides in nodes_to_start:
                cls = getattr(importlib.import_module(spec.module), spec.cls)
                node = cls(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
                nodes.append(node)
                executor.add_node(node)
        except (OSError, ValueError, RuntimeError) as error:
            print(f"[inerf_ros] cannot start: {error}", file=sys.stderr)
            for node in nodes:
                getattr(node, "close", lambda: None)()
                node.destroy_node()
            return 1
        print(f"[inerf_ros] running {', '.join(spec.name for spec, _ in nodes_to_start)}; Ctrl-C to stop")
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            for node in nodes:
                getattr(node, "close", lambda: None)()
                node.destroy_node()
    return 0
