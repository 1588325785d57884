"""The live pipeline's node list and launch arguments: one source of truth.

``launch/localize.launch.py`` (``ros2 launch inerf_ros localize.launch.py``) and
``inerf-ros launch localize`` (for environments without ``ros2 launch``, such as ROS 2 from PyPI)
both build the same nodes, with the same parameter file and overrides, from these tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from inerf_ros import paths
from inerf_ros.ros.node_main import large_data_environment


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node of the localize pipeline: where its class is, and which parameters and launch arguments it has."""

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
    """A launch argument: its name, default value (a string, as ``ros2 launch`` passes it) and description."""

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
                      "inerf_ros.optim.sampling:SamplingConfig", "inerf_ros.optim.localizer:LocalizerConfig",
                      "inerf_ros.pipeline:PlausibilityConfig", "inerf_ros.optim.correction:CorrectionConfig")),
]

# Topic the nodes use (relative) -> launch argument with the absolute topic.
REMAPPINGS = {"image_raw": "image_topic", "camera_info": "camera_info_topic"}
# TF relative, so that the stack works under a namespace (as nav2 does).
TF_REMAPPINGS = [("/tf", "tf"), ("/tf_static", "tf_static")]


def config_classes(spec: NodeSpec) -> list[type]:
    """The config dataclasses whose fields are ``spec``'s ROS parameters (imported on demand)."""
    out = []
    for ref in spec.configs:
        module, name = ref.split(":")
        out.append(getattr(importlib.import_module(module), name))
    return out


def launch_arguments() -> list[LaunchArgument]:
    """The localize launch arguments, with the shipped YAML and models as defaults."""
    return [
        LaunchArgument("params_file", str(paths.config_file("localize.yaml")),
                       "YAML with the parameters of every node (sections named after the nodes)"),
        LaunchArgument("nerf_model", "", "NeRF model directory (empty: the params file's model_dir, else the "
                                         "shipped demo model)"),
        LaunchArgument("posecnn_model", "", "PoseCNN model directory (empty: the params file's model_dir, else "
                                            "the shipped demo model)"),
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


# Launch argument -> the shipped model a node loads when neither the argument nor the params file names one.
SHIPPED_MODELS = {"nerf_model": "nerf_tabletop", "posecnn_model": "posecnn_tabletop"}


def _params_section(params_file: str, node: str) -> dict:
    """The ``ros__parameters`` of ``node`` in ``params_file`` ({} when the file or the section is missing)."""
    try:
        data = yaml.safe_load(Path(params_file).read_text()) or {}
    except (OSError, yaml.YAMLError):   # check_parameters / the node itself report a broken file
        return {}
    section = data.get(node) if isinstance(data, dict) else None
    section = section.get("ros__parameters") if isinstance(section, dict) else None
    return section if isinstance(section, dict) else {}


def model_dir(values: dict[str, str], node: str, argument: str) -> str:
    """The model directory ``node`` loads: the launch argument when given, else the params file's
    ``model_dir`` (a workspace's ``localize.yaml`` names its own), else the shipped demo model.
    """
    if values.get(argument):
        return values[argument]
    from_file = _params_section(values["params_file"], node).get("model_dir")
    if isinstance(from_file, str) and from_file:
        return from_file
    return str(paths.model_dir(SHIPPED_MODELS[argument]))


def resolve(values: dict[str, str]) -> tuple[list[tuple[NodeSpec, dict]], list[tuple[str, str]]]:
    """Nodes to start with their parameter overrides, and the remappings, for argument ``values``."""
    nodes = []
    for spec in NODES:
        if spec.condition and not _truthy(values[spec.condition]):
            continue
        overrides = {param: model_dir(values, spec.name, arg) if arg in SHIPPED_MODELS else values[arg]
                     for param, arg in spec.parameters.items()}
        if "use_prior" in overrides:
            overrides["use_prior"] = _truthy(overrides["use_prior"])
        overrides["use_sim_time"] = _truthy(values["use_sim_time"])
        nodes.append((spec, overrides))
    remaps = [(topic, values[arg]) for topic, arg in REMAPPINGS.items()] + TF_REMAPPINGS
    return nodes, remaps


def check_parameters(values: dict[str, str]) -> None:
    """Refuse, in one line (``ValueError``), a parameter file whose started nodes disagree on a shared value.

    ``metres_per_unit`` is a parameter of initializer_node (detections are metric, the object poses in
    NeRF units) and of inerf_node (0 there: the model's): two values would put every prior at the
    wrong distance, and the estimates would be refused as implausible with no word of the cause.
    """
    if not _truthy(values["use_posecnn"]):   # no initializer_node: nothing to agree with
        return
    path = Path(values["params_file"])
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"params_file {path}: not YAML: {' '.join(str(error).split())}") from None
    # A malformed section is left to the node, which names the parameter.
    initializer = _params_section(values["params_file"], "initializer_node").get("metres_per_unit")
    inerf = _params_section(values["params_file"], "inerf_node").get("metres_per_unit")
    if initializer is None or inerf is None:
        return
    try:
        initializer, inerf = float(initializer), float(inerf)
    except (TypeError, ValueError):
        return   # the node itself refuses a value that is not a number, with the parameter's range
    if inerf != 0.0 and not math.isclose(initializer, inerf, rel_tol=1e-9):
        raise ValueError(f"params_file {path}: metres_per_unit is {initializer:g} for initializer_node but "
                         f"{inerf:g} for inerf_node: set one value in both sections (or 0 in inerf_node "
                         f"to use the model's)")


# -- `inerf-ros launch localize` -----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros launch`` arguments: one ``--flag`` per launch argument, plus respawning."""
    parser.add_argument("launch_name", choices=["localize"], help="what to launch (the localize pipeline)")
    for arg in launch_arguments():
        parser.add_argument("--" + arg.name.replace("_", "-"), dest=arg.name, default=arg.default,
                            help=f"{arg.description} (default: {arg.default})")
    parser.add_argument("--respawn", action="store_true",
                        help="restart a node that exits (as ros2 launch's respawn=True); the others never stop "
                             "with it either way")
    parser.add_argument("--respawn-delay", type=float, default=2.0,
                        help="seconds between a node's exit and its restart (default: 2.0)")


def _ros_value(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def node_commands(values: dict[str, str]) -> dict[str, list[str]]:
    """{node name: the command line that runs it in a process of its own} for argument ``values``.

    Raises ``ValueError`` when the parameter file fails :func:`check_parameters`.
    """
    check_parameters(values)
    nodes_to_start, remaps = resolve(values)
    commands = {}
    for spec, overrides in nodes_to_start:
        ros_args = ["--ros-args", "--params-file", values["params_file"], "--log-level", values["log_level"]]
        for name, value in overrides.items():
            ros_args += ["-p", f"{name}:={_ros_value(value)}"]
        for topic, target in remaps:
            ros_args += ["-r", f"{topic}:={target}"]
        commands[spec.name] = [sys.executable, "-m", spec.module, *ros_args]
    return commands


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def supervise(commands: dict[str, list[str]], respawn: bool = False, respawn_delay_s: float = 2.0,
              should_stop=lambda: False, poll_s: float = 0.1, log=None) -> int:
    """Run each command in a process of its own until all have ended or ``should_stop()``.

    One process dying never stops the others (they share no interpreter, as under ``ros2 launch``):
    its exit is reported with its code, and with ``respawn`` it is started again after
    ``respawn_delay_s``. On stop (or Ctrl-C) every process gets SIGINT, then SIGTERM, then SIGKILL.
    Returns 0 when every process ended with 0 (or was stopped by us), else the last non-zero code
    (1 for a death by signal).
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    env = large_data_environment()  # camera images between processes (node_main.DDS_TRANSPORT)
    processes = {name: subprocess.Popen(command, env=env) for name, command in commands.items()}
    restart_at: dict[str, float] = {}
    status = 0
    try:
        while (processes or restart_at) and not should_stop():
            time.sleep(poll_s)
            for name, process in list(processes.items()):
                code = process.poll()
                if code is None:
                    continue
                del processes[name]
                if code != 0:
                    status = code if code > 0 else 1
                log(f"[inerf_ros] {name} {_describe_exit(code)}" +
                    (f"; restarting it in {respawn_delay_s:g} s" if respawn else "; the other nodes keep running"))
                if respawn:
                    restart_at[name] = time.monotonic() + respawn_delay_s
            for name, when in list(restart_at.items()):
                if time.monotonic() >= when:
                    del restart_at[name]
                    processes[name] = subprocess.Popen(commands[name], env=env)
                    log(f"[inerf_ros] {name} restarted")
    except KeyboardInterrupt:
        pass
    finally:
        _stop(processes)
    return status


def _stop(processes: dict) -> None:
    for sig, wait_s in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        alive = [p for p in processes.values() if p.poll() is None]
        if not alive:
            return
        for process in alive:
            process.send_signal(sig)
        for process in alive:
            try:
                process.wait(timeout=wait_s)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: escalate
                pass


def run(args) -> int:
    """Each node in a process of its own (a crash in one cannot take the others down), supervised."""
    values = {arg.name: getattr(args, arg.name) for arg in launch_arguments()}
    commands = node_commands(values)
    print(f"[inerf_ros] running {', '.join(commands)} (one process each"
          f"{', respawned on exit' if args.respawn else ''}); Ctrl-C to stop", file=sys.stderr, flush=True)
    return supervise(commands, respawn=args.respawn, respawn_delay_s=args.respawn_delay)
