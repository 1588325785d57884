"""Bad model files and bad start-up parameters: the node exits 1 with one line naming the problem.

Each case once gave a traceback (or, worse, a node that started and then failed or detected nothing
on every frame). The nodes are started in this process through their real ``main`` path
(:func:`inerf_ros.ros.node_main.run`), which is what the console scripts and the launcher run.
"""
import json

import pytest
import torch

from inerf_ros.ros import node_main

POSECNN_META = {"classes": [{"name": "mug"}, {"name": "box"}], "backbone": "light", "width": 8,
                "decoder_width": 16, "fc_width": 32, "input_width": 64, "input_height": 48, "reference_focal": 60.0}


@pytest.fixture(scope="module")
def posecnn_dir(tmp_path_factory):
    from inerf_ros.posecnn.model import build_network, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("posecnn")
    save_checkpoint(path, build_network(POSECNN_META), POSECNN_META, {})
    return path


def _copy(source, target):
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).write_bytes(item.read_bytes())
    return target


def _edit_json(path, **changes):
    doc = json.loads(path.read_text())
    section = doc.get("metadata", doc)
    section.update(changes)
    path.write_text(json.dumps(doc))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _not_safetensors(path):
    path.write_bytes(b"PK\x03\x04 this is a zip file, not safetensors" * 10)


POSECNN_CASES = {
    "truncated weights": (lambda d: _truncate(d / "posecnn.safetensors"), [], "safetensors"),
    "non-safetensors weights": (lambda d: _not_safetensors(d / "posecnn.safetensors"), [], "safetensors"),
    "malformed posecnn.json": (lambda d: (d / "posecnn.json").write_text('{"classes": [ '), [], "not valid JSON"),
    "posecnn.json not an object": (lambda d: (d / "posecnn.json").write_text("[1, 2]"), [], "JSON object"),
    "huge width": (lambda d: _edit_json(d / "posecnn.json", width=10 ** 7), [], "width = 10000000 is out of range"),
    "input_width 0": (lambda d: _edit_json(d / "posecnn.json", input_width=0), [], "input_width = 0"),
    "reference_focal 0": (lambda d: _edit_json(d / "posecnn.json", reference_focal=0), [], "reference_focal = 0"),
    "width not a number": (lambda d: _edit_json(d / "posecnn.json", width="abc"), [], "width must be an integer"),
    "classes not a list": (lambda d: _edit_json(d / "posecnn.json", classes="mug"), [], "classes must be a list"),
    "unknown class parameter": (lambda d: None, ["-p", "classes:=['nonexistent']"], "not classes of the model"),
    "score_threshold out of range": (lambda d: None, ["-p", "score_threshold:=2.0"], "score_threshold"),
}

NERF_CASES = {
    "aabb a string": (lambda d: _edit_json(d / "model.json", aabb="box"), [], "aabb must be"),
    "n_samples a string": (lambda d: _edit_json(d / "model.json", n_samples="abc"), [], "n_samples must be"),
    "metres_per_unit negative": (lambda d: _edit_json(d / "model.json", metres_per_unit=-1),
                                 [], "metres_per_unit = -1"),
    "near beyond far": (lambda d: _edit_json(d / "model.json", near=5.0, far=1.0), [], "near"),
    "field hidden a string": (lambda d: _edit_json(d / "model.json", field={"hidden": "wide"}), [], "field"),
    "num_rays 0": (lambda d: None, ["-p", "num_rays:=0"], "num_rays"),
    "learning_rate negative": (lambda d: None, ["-p", "learning_rate:=-1.0"], "learning_rate"),
    "num_rays not a number": (lambda d: None, ["-p", "num_rays:=abc"], "num_rays"),
    "unknown strategy": (lambda d: None, ["-p", "strategy:=grid"], "unknown sampling strategy"),
    "mask_classes not ids": (lambda d: None, ["-p", "mask_classes:=['abc']"], "mask_classes must be integer"),
    "device without CUDA": (lambda d: None, ["-p", "device:=cuda:7"], "cuda"),
    "believed base placement of 3 numbers": (lambda d: None, ["-p", "base_frame:=base_link", "-p",
                                                              "initial_nerf_T_base:=[0.1, 0.2, 0.3]"],
                                             "initial_nerf_T_base needs 7 numbers"),
    "believed base placement with NaN": (lambda d: None, ["-p", "base_frame:=base_link", "-p",
                                                          "initial_nerf_T_base:=[0.0, 0.0, .nan, 0.0, 0.0, 0.0, 1.0]"],
                                         "NaN"),
}


def _start(node_class, model_dir, extra, capfd, ros_domain_id, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ros_domain_id))
    monkeypatch.delenv(node_main.DEBUG_ENV, raising=False)
    code = node_main.run(node_class, ["node", "--ros-args", "-p", f"model_dir:={model_dir}"] + extra)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return code, lines


@pytest.mark.parametrize("case", list(POSECNN_CASES))
def test_posecnn_node_refuses_a_bad_model_or_parameter_in_one_line(case, posecnn_dir, tmp_path, capfd,
                                                                   ros_domain_id, monkeypatch):
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    damage, extra, reason = POSECNN_CASES[case]
    model_dir = _copy(posecnn_dir, tmp_path / "model")
    damage(model_dir)
    code, lines = _start(PosecnnNode, model_dir, extra, capfd, ros_domain_id, monkeypatch)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("[inerf_ros] cannot start PosecnnNode: ") and reason in lines[0], lines


@pytest.mark.parametrize("case", list(NERF_CASES))
def test_inerf_node_refuses_a_bad_model_or_parameter_in_one_line(case, nerf_dir, tmp_path, capfd,
                                                                 ros_domain_id, monkeypatch):
    from inerf_ros.nodes.inerf_node import InerfNode

    if case == "device without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    damage, extra, reason = NERF_CASES[case]
    model_dir = _copy(nerf_dir, tmp_path / "model")
    damage(model_dir)
    code, lines = _start(InerfNode, model_dir, extra, capfd, ros_domain_id, monkeypatch)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("[inerf_ros] cannot start InerfNode: ") and reason in lines[0], lines


def test_the_intact_models_start(posecnn_dir, nerf_dir, ros_domain_id):
    """The cases above damage these directories: intact, both nodes start (the refusals are the damage's)."""
    import rclpy

    from inerf_ros.nodes.inerf_node import InerfNode
    from inerf_ros.nodes.posecnn_node import PosecnnNode

    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        for node_class, path in ((PosecnnNode, posecnn_dir), (InerfNode, nerf_dir)):
            from rclpy.parameter import Parameter

            node = node_class(context=context, parameter_overrides=[Parameter("model_dir", value=str(path))])
            getattr(node, "close", lambda: None)()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
