"""The launch file, `inerf-ros launch` and config/localize.yaml agree with the nodes' config dataclasses."""
import ast
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from inerf_ros import config as config_tools
from inerf_ros import launch_description, params_yaml, paths

ROOT = Path(__file__).resolve().parents[2]


def test_committed_yaml_is_generated_from_the_dataclasses():
    committed = (ROOT / "config" / "localize.yaml").read_text()
    assert committed == params_yaml.render(), "config/localize.yaml is stale: run `python -m inerf_ros.params_yaml`"


def test_every_yaml_key_is_a_field_of_its_node_config():
    data = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    assert set(data) == {spec.name for spec in launch_description.NODES}
    for spec in launch_description.NODES:
        fields = {f.name for cls in launch_description.config_classes(spec) for f in config_tools.fields(cls)}
        keys = set(data[spec.name]["ros__parameters"])
        assert keys <= fields, f"{spec.name}: unknown keys {keys - fields}"


def test_parameter_names_are_unique_per_node():
    for spec in launch_description.NODES:
        names = [f.name for cls in launch_description.config_classes(spec) for f in config_tools.fields(cls)]
        assert len(names) == len(set(names)), f"{spec.name} has duplicated parameter names"


def test_launch_overrides_name_real_parameters_and_arguments():
    arguments = {a.name for a in launch_description.launch_arguments()}
    for spec in launch_description.NODES:
        fields = {f.name for cls in launch_description.config_classes(spec) for f in config_tools.fields(cls)}
        assert set(spec.parameters) <= fields
        assert set(spec.parameters.values()) <= arguments
        assert spec.condition is None or spec.condition in arguments


def test_resolve_drops_posecnn_when_disabled():
    values = {a.name: a.default for a in launch_description.launch_arguments()}
    nodes, remaps = launch_description.resolve(values)
    assert [spec.name for spec, _ in nodes] == ["posecnn_node", "initializer_node", "inerf_node"]
    assert ("image_raw", "/camera/image_raw") in remaps
    values["use_posecnn"] = "false"
    nodes, _ = launch_description.resolve(values)
    assert [spec.name for spec, _ in nodes] == ["inerf_node"]
    assert nodes[0][1]["use_prior"] is False


def _load_launch_file():
    spec = importlib.util.spec_from_file_location("localize_launch", ROOT / "launch" / "localize.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # importing must work without `launch` installed
    return module


def test_launch_file_imports_launch_only_inside_generate_launch_description():
    source = (ROOT / "launch" / "localize.launch.py").read_text()
    tree = ast.parse(source)
    top_level_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not top_level_imports
    module = _load_launch_file()
    assert callable(module.generate_launch_description)
    try:  # (the repository's own launch/ folder can shadow the name: ask for the real API)
        from launch import LaunchDescription  # noqa: F401
        from launch_ros.actions import Node  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            module.generate_launch_description()


class _Recorded:
    """Stands in for a launch / launch_ros action class: records what the launch file passes."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _recording_launch_modules() -> dict:
    """Modules named like launch's and launch_ros's, whose classes record their arguments, so that the
    launch file can be built and compared with the node list where ROS 2's launch is not installed.
    """
    names = {"launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction"],
             "launch_ros": [], "launch_ros.actions": ["Node"]}
    modules = {}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Recorded,), {}))
        modules[module_name] = module
    return modules


def _built_launch_file(monkeypatch, **arguments):
    """(declared arguments, nodes) of the launch file for launch ``arguments`` over the defaults."""
    for name, module in _recording_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    entities = _load_launch_file().generate_launch_description().args[0]
    declared = [(e.args[0], e.kwargs["default_value"], e.kwargs["description"]) for e in entities
                if type(e).__name__ == "DeclareLaunchArgument"]
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    values = {name: default for name, default, _ in declared}
    values.update(arguments)
    context = types.SimpleNamespace(launch_configurations=values)
    return declared, opaque.kwargs["function"](context)


def test_launch_file_builds_the_shared_node_list_and_arguments(monkeypatch):
    """The launch file's arguments, nodes, overrides and remappings are the shared ones (launch_description,
    which `inerf-ros launch` also runs), recorded through stand-in launch classes.
    """
    declared, nodes = _built_launch_file(monkeypatch)
    assert declared == [(a.name, a.default, a.description) for a in launch_description.launch_arguments()]
    values = {a.name: a.default for a in launch_description.launch_arguments()}
    expected, remaps = launch_description.resolve(values)
    assert [n.kwargs["executable"] for n in nodes] == ["posecnn_node", "initializer_node", "inerf_node"]
    for node, (spec, overrides) in zip(nodes, expected):
        assert node.kwargs["name"] == spec.name and node.kwargs["package"] == "inerf_ros"
        assert node.kwargs["parameters"] == [values["params_file"], overrides]
        assert node.kwargs["remappings"] == remaps
        assert node.kwargs["arguments"] == ["--ros-args", "--log-level", "info"]
    _, nodes = _built_launch_file(monkeypatch, use_posecnn="false", nerf_model="/m/nerf")
    assert [n.kwargs["executable"] for n in nodes] == ["inerf_node"]
    assert nodes[0].kwargs["parameters"][1]["model_dir"] == "/m/nerf"


def test_launch_file_refuses_a_params_file_with_two_scales(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="metres_per_unit"):
        _built_launch_file(monkeypatch, params_file=str(_params_file(tmp_path, 0.5, 0.25)))


def test_models_come_from_the_argument_else_the_params_file_else_the_shipped_ones(tmp_path):
    """`params_file:=WS/localize.yaml` alone runs the workspace's models (build-workspace names them there)."""
    shipped = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    shipped["inerf_node"]["ros__parameters"]["model_dir"] = "/ws/nerf"
    shipped["posecnn_node"]["ros__parameters"]["model_dir"] = ""
    params = tmp_path / "ws.yaml"
    params.write_text(yaml.safe_dump(shipped))
    values = {a.name: a.default for a in launch_description.launch_arguments()}
    values["params_file"] = str(params)

    def models(**arguments):
        nodes, _ = launch_description.resolve({**values, **arguments})
        return {spec.name: overrides["model_dir"] for spec, overrides in nodes if "model_dir" in overrides}

    assert models() == {"posecnn_node": str(paths.model_dir("posecnn_tabletop")), "inerf_node": "/ws/nerf"}
    assert models(nerf_model="/arg/nerf", posecnn_model="/arg/posecnn") == \
        {"posecnn_node": "/arg/posecnn", "inerf_node": "/arg/nerf"}


def _params_file(tmp_path, initializer_mpu, inerf_mpu):
    shipped = yaml.safe_load((ROOT / "config" / "localize.yaml").read_text())
    shipped["initializer_node"]["ros__parameters"]["metres_per_unit"] = initializer_mpu
    shipped["inerf_node"]["ros__parameters"]["metres_per_unit"] = inerf_mpu
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(shipped))
    return path


def test_launch_refuses_two_metres_per_unit_in_one_line(tmp_path):
    values = {a.name: a.default for a in launch_description.launch_arguments()}
    launch_description.check_parameters(values)   # the shipped file: inerf_node takes the model's (0)
    for agreeing in ((0.5, 0.5), (0.5, 0.0), (0.5, 0.5 * (1 + 1e-12))):
        launch_description.check_parameters({**values, "params_file": str(_params_file(tmp_path, *agreeing))})
    values["params_file"] = str(_params_file(tmp_path, 1.0, 0.5))
    with pytest.raises(ValueError, match=r"metres_per_unit is 1 for initializer_node but 0.5 for inerf_node"):
        launch_description.node_commands(values)
    launch_description.check_parameters({**values, "use_posecnn": "false"})   # no initializer: no conflict


def test_cli_launch_refuses_a_conflicting_parameter_file_in_one_line_before_any_node(tmp_path):
    params = _params_file(tmp_path, 1.0, 0.5)
    result = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "launch", "localize", "--params-file",
                             str(params)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metres_per_unit is 1 for initializer_node but 0.5 for inerf_node" in lines[0], lines
