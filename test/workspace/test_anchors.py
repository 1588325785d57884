"""Anchor fusion: detections on posed images -> nerf_T_obj, with outliers, a symmetric object, the units
(PoseCNN metres vs NeRF units) and the camera convention (optical), and the scale from objects.
"""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from inerf_ros import frames
from inerf_ros.posecnn.types import Detection
from inerf_ros.workspace.anchors import (AnchorConfig, Observation, fuse_anchors, observations_from_detections,
                                         scale_from_objects, triangulate)

MPU = 0.25  # metres per NeRF unit


def _cameras(n: int, seed: int = 0) -> np.ndarray:
    """Optical cameras (NeRF units) on a ring around the origin, looking at it."""
    rng = np.random.default_rng(seed)
    poses = []
    for angle in np.linspace(0, 2 * np.pi, n, endpoint=False):
        eye = np.array([2.4 * np.cos(angle), 2.4 * np.sin(angle), 1.6]) + rng.normal(scale=0.05, size=3)
        poses.append(frames.look_at(eye, rng.normal(scale=0.1, size=3)))
    return np.stack(poses)


def _observations(nerf_T_obj: np.ndarray, cams: np.ndarray, seed: int, ray_noise_deg: float = 0.3,
                  depth_noise: float = 0.03, rotation_noise_deg: float = 2.0) -> list[Observation]:
    """What a detector reports: the direction a little off, the depth a few percent off, the rotation noisy."""
    rng = np.random.default_rng(seed)
    out = []
    for k, nerf_T_cam in enumerate(cams):
        cam_T_obj = frames.nerf_to_metres(np.linalg.inv(nerf_T_cam) @ nerf_T_obj, MPU)
        turn = Rotation.from_rotvec(np.radians(ray_noise_deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix()
        cam_T_obj[:3, 3] = turn @ cam_T_obj[:3, 3] * (1 + depth_noise * rng.normal())
        noise = Rotation.from_rotvec(np.radians(rotation_noise_deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix()
        cam_T_obj[:3, :3] = cam_T_obj[:3, :3] @ noise
        out.append(Observation(f"img{k}", nerf_T_cam, cam_T_obj))
    return out


def _pose(xyz, euler_deg) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix()
    pose[:3, 3] = xyz
    return pose


def test_triangulate_finds_the_common_point_of_rays():
    rng = np.random.default_rng(1)
    point = np.array([0.3, -0.2, 0.5])
    origins = rng.normal(size=(6, 3)) * 2
    assert np.allclose(triangulate(origins, point - origins), point, atol=1e-12)


def test_fusion_rejects_outliers_and_keeps_symmetric_axes_free():
    cams = _cameras(16)
    box = _pose([0.2, 0.1, 0.05], [0, 0, 35])
    can = _pose([-0.3, 0.2, 0.1], [0, 0, 0])
    box_obs = _observations(box, cams, seed=2)
    # Three wild detections (a look-alike elsewhere, a flipped box, a far depth).
    box_obs[1].cam_T_obj[:3, 3] += [0.2, 0.0, 0.0]
    flip = Rotation.from_euler("x", 180, degrees=True).as_matrix()
    box_obs[5].cam_T_obj[:3, :3] = box_obs[5].cam_T_obj[:3, :3] @ flip
    box_obs[9].cam_T_obj[:3, 3] *= 1.6
    can_obs = _observations(can, cams, seed=3)
    for obs in can_obs:  # a symmetric can's yaw is arbitrary in every detection
        spin = Rotation.from_euler("z", np.random.default_rng(len(obs.image)).uniform(0, 360), degrees=True)
        obs.cam_T_obj[:3, :3] = obs.cam_T_obj[:3, :3] @ spin.as_matrix()
    few = _observations(_pose([0, 0, 0], [0, 0, 0]), cams[:2], seed=4)
    anchors, skipped = fuse_anchors({"box": box_obs, "can": can_obs, "mug": few}, ["can"], MPU, AnchorConfig())
    assert set(anchors) == {"box", "can"} and len(skipped) == 1 and skipped[0].startswith("mug: seen in 2 image")
    a = anchors["box"]
    assert np.linalg.norm(a.nerf_T_obj[:3, 3] - box[:3, 3]) * MPU < 0.003  # depth noise 3 % at ~0.7 m
    angle = np.degrees(Rotation.from_matrix(a.nerf_T_obj[:3, :3].T @ box[:3, :3]).magnitude())
    assert angle < 1.0
    assert "img1" not in a.inliers and "img5" not in a.inliers and a.n_inliers <= 14
    assert 0.0 < a.spread_m < 0.01 and 0.5 < a.spread_deg < 4.0
    c = anchors["can"]
    assert c.symmetric and np.linalg.norm(c.nerf_T_obj[:3, 3] - can[:3, 3]) * MPU < 0.003
    assert np.degrees(np.arccos(c.nerf_T_obj[:3, 2] @ can[:3, 2])) < 1.0  # the axis, whatever the yaw
    assert c.spread_deg < 4.0  # the spins do not count as spread
    entry = a.initializer_entry().split()
    assert entry[0] == "box" and np.allclose([float(v) for v in entry[1:4]], a.nerf_T_obj[:3, 3], atol=1e-6)


def test_detections_are_gated_and_put_in_the_nerf_frame_in_its_units():
    nerf_T_cam = frames.look_at([1.0, 0.0, 0.5], [0.0, 0.0, 0.0])
    nerf_T_obj = _pose([0.1, 0.2, 0.0], [0, 0, 30])
    cam_T_obj_m = frames.nerf_to_metres(np.linalg.inv(nerf_T_cam) @ nerf_T_obj, MPU)
    detections = [Detection(1, "box", 0.9, cam_T_obj_m), Detection(2, "can", 0.2, cam_T_obj_m),
                  Detection(3, "mug", 0.9, cam_T_obj_m, visible_fraction=0.1)]
    kept = observations_from_detections("a.png", nerf_T_cam, detections, AnchorConfig())
    assert [name for name, _ in kept] == ["box"]
    obs = kept[0][1]
    # The anchor math: nerf_T_obj = nerf_T_cam @ cam_T_obj with PoseCNN's metres turned into NeRF units.
    assert np.allclose(obs.nerf_T_cam @ frames.metres_to_nerf(obs.cam_T_obj, MPU), nerf_T_obj, atol=1e-12)
    # An OpenGL camera pose (transforms.json) must be turned optical first: used as is, the object lands
    # behind the camera.
    wrong = frames.optical_to_opengl(nerf_T_cam) @ frames.metres_to_nerf(obs.cam_T_obj, MPU)
    assert np.linalg.norm(wrong[:3, 3] - nerf_T_obj[:3, 3]) > 0.5
    bad = [Detection(1, "box", 0.9, np.full((4, 4), np.nan))]
    with pytest.raises(ValueError, match="non-finite"):
        observations_from_detections("a.png", nerf_T_cam, bad, AnchorConfig())


def test_scale_from_objects_recovers_metres_per_unit_with_its_spread():
    cams = _cameras(20, seed=5)
    observations = {name: _observations(_pose(xyz, [0, 0, 10]), cams, seed=k, depth_noise=0.03)
                    for k, (name, xyz) in enumerate([("a", [0.2, 0.1, 0.05]), ("b", [-0.3, 0.2, 0.1]),
                                                     ("c", [0.0, -0.3, 0.0])])}
    anchors, skipped = fuse_anchors(observations, [], None, AnchorConfig())
    assert not skipped and len(anchors) == 3
    scale = scale_from_objects(anchors)
    assert scale["metres_per_unit"] == pytest.approx(MPU, rel=0.02)
    assert scale["detections"] >= 50 and 0.01 < scale["mad_fraction"] < 0.06
    with pytest.raises(ValueError, match="at least 3"):
        scale_from_objects({})
