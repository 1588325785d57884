"""train-posecnn --init-from (copy the tensors that fit from another class table's model) and the
on-the-fly camera effects of a training step (seeded by the trainer's generator).
"""
import dataclasses

import numpy as np
import pytest
import torch

from inerf_ros.posecnn.data import SceneTensors
from inerf_ros.posecnn.model import save_checkpoint
from inerf_ros.posecnn.network import PoseCNN
from inerf_ros.posecnn.train import TrainConfig, _camera_effects, init_from

CLASS_HEADS = {"label_head.out.weight", "label_head.out.bias", "vertex_head.out.weight", "vertex_head.out.bias",
               "rotation_head.4.weight", "rotation_head.4.bias"}


def _save(tmp_path, network, n_classes, backbone="light"):
    meta = {"classes": [{"id": i + 1, "name": f"c{i}", "symmetry": "none", "diameter": 0.1} for i in range(n_classes)],
            "backbone": backbone, "width": 4, "decoder_width": 8, "fc_width": 16, "roi_size": network.roi_size,
            "input_width": 64, "input_height": 48, "reference_focal": 50.0}
    save_checkpoint(tmp_path, network, meta, {i + 1: np.zeros((3, 3)) for i in range(n_classes)})
    return tmp_path


def test_init_from_copies_every_tensor_that_fits_and_leaves_the_class_heads(tmp_path):
    torch.manual_seed(0)
    source = PoseCNN(3, "light", 4, 8, fc_width=16)
    _save(tmp_path, source, 3)
    torch.manual_seed(1)
    target = PoseCNN(5, "light", 4, 8, fc_width=16)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    copied, fresh = init_from(target, tmp_path, "light", 4)
    assert set(fresh) == CLASS_HEADS
    state, source_state = target.state_dict(), source.state_dict()
    for name in copied:
        torch.testing.assert_close(state[name], source_state[name])
    assert not torch.equal(before["backbone.stages.0.0.0.weight"], state["backbone.stages.0.0.0.weight"])
    for name in fresh:  # as initialised
        torch.testing.assert_close(state[name], before[name])
    assert len(copied) + len(fresh) == len(state)


def test_init_from_refuses_another_backbone_or_no_model(tmp_path):
    _save(tmp_path / "m", PoseCNN(2, "light", 4, 8, fc_width=16), 2)
    with pytest.raises(ValueError, match="backbone is light of width 4"):
        init_from(PoseCNN(2, "vgg16", 4, 8, fc_width=16), tmp_path / "m", "vgg16", 4)
    with pytest.raises(FileNotFoundError):
        init_from(PoseCNN(2, "light", 4, 8, fc_width=16), tmp_path / "missing", "light", 4)


def test_camera_effects_in_a_step_are_seeded_by_the_training_generator():
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.integers(0, 256, (3, 24, 32, 3), dtype=np.uint8))
    label = torch.zeros(3, 24, 32, dtype=torch.uint8)
    label[:, 5:15, 5:20] = 1
    config = dataclasses.replace(TrainConfig(), camera_effects=True, background_share=1.0)
    a = _camera_effects(rgb, label, config, torch.Generator().manual_seed(3), [])
    b = _camera_effects(rgb, label, config, torch.Generator().manual_seed(3), [])
    c = _camera_effects(rgb, label, config, torch.Generator().manual_seed(4), [])
    assert a.dtype == torch.uint8 and a.shape == rgb.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[:, 0, 0], rgb[:, 0, 0])  # background replaced


def test_a_short_fit_with_all_randomizations_runs_and_stays_finite():
    from inerf_ros.posecnn.train import ClassSpec, fit

    torch.manual_seed(0)
    n, h, w = 4, 48, 64
    rgb = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
    label = torch.zeros(n, h, w, dtype=torch.uint8)
    label[:, 10:30, 10:30] = 1
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]], dtype=torch.float64).repeat(n, 1, 1)
    objects = torch.tensor([[f, 1, 1, 19.5, 19.5, 0.5, 400, 9.5, 9.5, 29.5, 29.5] for f in range(n)],
                           dtype=torch.float64)
    data = SceneTensors(rgb, label, label.clone(), K, objects, torch.eye(3, dtype=torch.float64).repeat(n, 1, 1))
    points = np.random.default_rng(0).uniform(-0.05, 0.05, (50, 3))
    config = dataclasses.replace(TrainConfig(), width=4, decoder_width=8, fc_width=16, input_width=w,
                                 input_height=h, batch_size=2, crop_width=48, crop_height=32, max_steps=3,
                                 threads=1, camera_effects=True, background_share=0.5)
    _, meta, history = fit(config, data, [ClassSpec("box", "none", 0.1, points)], progress=False)
    assert meta["training"]["steps"] == 3 and all(np.isfinite(h["total"]) for h in history)


def test_meshes_with_a_broken_file_stop_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "mug.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")  # a face naming a vertex that does not exist
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "train-posecnn", "--meshes", str(meshes),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "mug.obj" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists() and not (tmp_path / "model_data").exists()
    assert not (tmp_path / "model.partial").exists()
