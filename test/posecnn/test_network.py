"""A tiny PoseCNN overfits a few synthetic frames; checkpoints round-trip and refuse a wrong class table."""
import math

import numpy as np
import pytest
import torch

from inerf_ros.posecnn.data import SceneTensors, sample_surface
from inerf_ros.posecnn.model import load_posecnn, save_checkpoint
from inerf_ros.posecnn.network import PoseCNN
from inerf_ros.posecnn.refine import SilhouetteRefineConfig
from inerf_ros.posecnn.train import ClassSpec, TrainConfig, fit

WIDTH, HEIGHT, FOCAL = 64, 48, 60.0


def _cube_points(size, n=100):
    vertices = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * size / 2
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return sample_surface(vertices, faces, n)


def _synthetic_frames(n_frames=4, seed=0):
    """Noise backgrounds with a red square (class 1) and a blue disc (class 2) at known centres."""
    rng = np.random.default_rng(seed)
    K = np.array([[FOCAL, 0, (WIDTH - 1) / 2], [0, FOCAL, (HEIGHT - 1) / 2], [0, 0, 1]])
    rgbs, labels, rows, rotations = [], [], [], []
    vs, us = np.mgrid[0:HEIGHT, 0:WIDTH]
    for f in range(n_frames):
        rgb = rng.integers(90, 160, size=(HEIGHT, WIDTH, 3)).astype(np.uint8)
        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        centres = [(rng.uniform(10, 25), rng.uniform(10, 38)), (rng.uniform(40, 54), rng.uniform(10, 38))]
        for class_id, (u, v) in enumerate(centres, start=1):
            if class_id == 1:
                mask = (np.abs(us - u) <= 6) & (np.abs(vs - v) <= 6)
                rgb[mask] = (220, 30, 30)
            else:
                mask = (us - u) ** 2 + (vs - v) ** 2 <= 49
                rgb[mask] = (30, 40, 220)
            label[mask] = class_id
            ys, xs = np.nonzero(mask)
            z = 0.5 + 0.1 * class_id
            angle = rng.uniform(-0.5, 0.5)
            rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0],
                                 [0, 0, 1]])
            rows.append([f, class_id, class_id, u, v, z, mask.sum(), xs.min() - 0.5, ys.min() - 0.5,
                         xs.max() + 0.5, ys.max() + 0.5])
            rotations.append(rotation)
        rgbs.append(rgb)
        labels.append(label)
    return SceneTensors(
        rgb=torch.from_numpy(np.stack(rgbs)), label=torch.from_numpy(np.stack(labels)),
        instance=torch.from_numpy(np.stack(labels)), K=torch.from_numpy(np.stack([K] * n_frames)),
        objects=torch.tensor(rows, dtype=torch.float64), rotations=torch.tensor(np.array(rotations)))


CLASSES = [ClassSpec("red_box", "none", 0.1, _cube_points(0.06)),
           ClassSpec("blue_can", "continuous_z", 0.1, _cube_points(0.06))]


@pytest.fixture(scope="module")
def overfitted():
    data = _synthetic_frames(n_frames=2)
    # One thread: on a small, busy machine two threads of tiny convolutions mostly wait for each other.
    config = TrainConfig(width=8, decoder_width=16, fc_width=32, input_width=WIDTH, input_height=HEIGHT,
                         batch_size=2, learning_rate=1e-2, max_steps=100, max_minutes=0, augment=False, threads=1)
    network, meta, history = fit(config, data, CLASSES, progress=False)
    return data, network, meta, history


def test_tiny_posecnn_overfits(overfitted):
    data, network, _, history = overfitted
    first = np.mean([h["total"] for h in history[:5]])
    last = np.mean([h["total"] for h in history[-5:]])
    assert last < 0.2 * first, (first, last)
    for key in ("label", "vertex", "pose"):
        assert np.mean([h[key] for h in history[-5:]]) < 0.5 * np.mean([h[key] for h in history[:5]]), key
    with torch.no_grad():
        from inerf_ros.posecnn.network import normalise
        predicted = network(normalise(data.rgb))["logits"].argmax(1)
    truth = data.label.long()
    for class_id in (1, 2):
        inter = ((predicted == class_id) & (truth == class_id)).sum()
        union = ((predicted == class_id) | (truth == class_id)).sum()
        assert inter / union > 0.9, (class_id, float(inter / union))


def test_checkpoint_round_trip_and_detection(overfitted, tmp_path):
    data, network, meta, _ = overfitted
    save_checkpoint(tmp_path, network, meta, {1: CLASSES[0].points, 2: CLASSES[1].points})
    # The network's own poses: these flat squares and discs are not the silhouettes of the model points.
    detector = load_posecnn(tmp_path, "cpu", class_names=["red_box", "blue_can"],
                            refine=SilhouetteRefineConfig(silhouette_refine=False))
    assert detector.class_names == ["red_box", "blue_can"]
    for p_ref, p_new in zip(network.state_dict().values(), detector.network.state_dict().values()):
        assert torch.equal(p_ref, p_new)
    # Full resolution = twice the input size: K doubles, the label mask comes back at full size.
    detector.min_pixels = 10
    rgb = np.repeat(np.repeat(data.rgb[0].numpy(), 2, axis=0), 2, axis=1)
    K = data.K[0].numpy().copy()
    K[:2] *= 2
    K[:2, 2] += 0.5
    result = detector.detect(rgb, K)
    assert result.label_mask.shape == (2 * HEIGHT, 2 * WIDTH)
    found = {d.class_name: d for d in result.objects}
    assert set(found) == {"red_box", "blue_can"}
    for row in data.objects[data.objects[:, 0] == 0]:
        det = found[CLASSES[int(row[2]) - 1].name]
        uv = data.K[0].numpy() @ det.cam_T_obj[:3, 3]
        # Centre within 1.5 input pixels and depth within 5 % after a short overfit.
        assert np.linalg.norm(uv[:2] / uv[2] - row[3:5].numpy()) < 1.5
        assert abs(det.cam_T_obj[2, 3] - float(row[5])) < 0.05 * float(row[5])
        assert 0 < det.score <= 1 and 0 < det.visible_fraction <= 1
        np.testing.assert_allclose(det.cam_T_obj[:3, :3].T @ det.cam_T_obj[:3, :3], np.eye(3), atol=1e-6)


def test_wrong_class_table_is_refused(overfitted, tmp_path):
    _, network, meta, _ = overfitted
    save_checkpoint(tmp_path, network, meta, {})
    with pytest.raises(ValueError, match=r"trained for the classes \['red_box', 'blue_can'\].*expects \['mug'\]"):
        load_posecnn(tmp_path, "cpu", class_names=["mug"])
    with pytest.raises(FileNotFoundError, match="not a PoseCNN model directory"):
        load_posecnn(tmp_path / "nowhere")


def test_vgg16_backbone_shapes():
    network = PoseCNN(3, backbone="vgg16", width=8, decoder_width=16, fc_width=32).eval()
    with torch.no_grad():
        out = network(torch.zeros(1, 3, 64, 96))
        quats = network.quaternions(out, torch.tensor([[4.0, 4.0, 40.0, 30.0]]), torch.tensor([0]), torch.tensor([2]))
    assert out["logits"].shape == (1, 4, 64, 96) and out["vertex"].shape == (1, 9, 64, 96)
    assert quats.shape == (1, 4) and torch.allclose(quats.norm(dim=1), torch.ones(1))
