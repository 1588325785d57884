"""Checkpoint round trip and clear errors for corrupt, truncated or mismatched files."""
from __future__ import annotations

import json

import pytest
import torch

from inerf_ros.camera import Intrinsics
from inerf_ros.nerf.checkpoint import CheckpointError, load_model, save_model
from inerf_ros.nerf.render import render_image

from nerf_test_utils import look_at
from test_render import small_model


@pytest.fixture
def saved(tmp_path):
    model = small_model(3)
    model.metadata.metres_per_unit = 0.5
    model.occupancy.occupied[:4] = False
    save_model(model, tmp_path / "m", extra={"note": "test"})
    return model, tmp_path / "m"


def test_round_trip_renders_identically(saved):
    model, model_dir = saved
    loaded = load_model(model_dir)
    assert loaded.metadata.metres_per_unit == 0.5 and loaded.metadata.convention == "opengl"
    assert loaded.metadata.extra["note"] == "test" and loaded.metadata.aabb == model.metadata.aabb
    assert torch.equal(loaded.occupancy.occupied, model.occupancy.occupied)
    intr = Intrinsics(6, 4, 5.0, 5.0, 2.5, 1.5)
    pose = torch.tensor(look_at((0.0, -2.5, 0.5)), dtype=torch.float32)
    assert torch.equal(render_image(model, intr, pose)["rgb"], render_image(loaded, intr, pose)["rgb"])
    doc = json.loads((model_dir / "model.json").read_text())
    assert doc["format_version"] == 1 and "field.planes.0" in doc["tensors"]


def test_corrupt_weights_named(saved):
    _, model_dir = saved
    path = model_dir / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: SHA-256 does not match"):
        load_model(model_dir)


def test_truncated_weights_named(saved):
    _, model_dir = saved
    path = model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: 100 bytes, expected"):
        load_model(model_dir)
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        doc = json.loads((model_dir / "model.json").read_text())
        doc.pop("weights_bytes"), doc.pop("weights_sha256")
        (model_dir / "model.json").write_text(json.dumps(doc))
        load_model(model_dir)


def test_mismatched_configuration_named(saved):
    _, model_dir = saved
    doc = json.loads((model_dir / "model.json").read_text())
    doc["metadata"]["field"]["channels"] = 5
    (model_dir / "model.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor field\.\S+ has shape"):
        load_model(model_dir)


def test_bad_json_version_and_missing(saved, tmp_path):
    _, model_dir = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nowhere")
    doc = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_model(model_dir)
    (model_dir / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.json: malformed JSON"):
        load_model(model_dir)
