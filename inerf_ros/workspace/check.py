"""A workspace against the truth of a rendered world (``--truth SCENE_DIR``): the only place that reads it.

The NeRF frame is SfM's, so its true placement is measured, not known: the similarity that maps the
SfM camera centres onto the *true* camera centres of the same images (``SCENE_DIR/<split>/
scene_camera.json``) is the truth the workspace's ``metres_per_unit`` and ``world_T_nerf`` are compared
with (its residual, SfM's own error, is reported with it). The robot's true base placement is
``arm/robot.json``'s ``truth.world_T_base``; the objects' true poses are ``objects.yaml``'s.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from inerf_ros.workspace.alignment import AlignmentConfig, robust_similarity

TARGETS = {"metres_per_unit_arm": 0.005, "metres_per_unit_objects": 0.02, "world_T_nerf_m": 0.005,
           "world_T_nerf_deg": 0.3, "anchor_m": 0.01, "anchor_deg": 3.0}
# SfM camera centres further than this from the true ones (after the fit) are misregistered frames.
TRUTH_INLIER_M = 0.02


def frame_index(image_name: str) -> int:
    """The scene frame an image came from: the last number in its name (frame_000123.png, 000123.png)."""
    numbers = re.findall(r"\d+", Path(image_name).stem)
    if not numbers:
        raise ValueError(f"{image_name}: no frame number in the name to match it with the scene's truth")
    return int(numbers[-1])


def true_cameras(scene_dir: Path, split: str) -> dict[int, np.ndarray]:
    """Frame index -> world_T_cam (optical, metres) of a make-scene split."""
    path = scene_dir / split / "scene_camera.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (--truth takes a make-scene folder)")
    out = {}
    for key, camera in json.loads(path.read_text()).items():
        cam_T_world = np.eye(4)
        cam_T_world[:3, :3] = np.asarray(camera["cam_R_w2c"], dtype=np.float64).reshape(3, 3)
        cam_T_world[:3, 3] = np.asarray(camera["cam_t_w2c"], dtype=np.float64) / 1000.0
        out[int(key)] = np.linalg.inv(cam_T_world)
    return out


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


def _axis_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a[:, 2] @ b[:, 2], -1.0, 1.0))))


def true_nerf_frame(result: dict, scene_dir: Path, split: str) -> tuple[float, np.ndarray, float, int]:
    """(true metres per unit, world_T_nerf (metric), rms of SfM's centres about it in metres, number of
    frames SfM misregistered).
    """
    cameras = true_cameras(scene_dir, split)
    names = [n for n in result["capture_poses"] if frame_index(n) in cameras]
    if len(names) < 3:
        raise ValueError(f"only {len(names)} workspace images match frames of {scene_dir / split}")
    src = np.array([np.asarray(result["capture_poses"][n])[:3, 3] for n in names])
    dst = np.array([cameras[frame_index(n)][:3, 3] for n in names])
    # Robust: a frame SfM misregistered (it happens in a fast sweep) must not move the truth.
    fit = robust_similarity(src, dst, AlignmentConfig(inlier_m=TRUTH_INLIER_M, min_frames=3))
    return fit.scale, fit.rigid, fit.rms, int((~fit.inliers).sum())


def anchor_errors(result: dict, scene_dir: Path, scale: float, world_T_nerf: np.ndarray) -> dict:
    """Per anchored object: (position error m, rotation error deg; symmetric: the axis only)."""
    objects = (yaml.safe_load((scene_dir / "objects.yaml").read_text()) or {}).get("objects", {})
    nerf_T_world = np.linalg.inv(world_T_nerf)
    out = {}
    for name, anchor in result["anchors"].items():
        if name not in objects:
            continue
        world_T_obj = np.eye(4)
        world_T_obj[:3, :3] = Rotation.from_quat(objects[name]["quaternion_xyzw"]).as_matrix()
        world_T_obj[:3, 3] = objects[name]["position"]
        truth = nerf_T_world @ world_T_obj  # metric NeRF frame
        estimate = np.asarray(anchor["nerf_T_obj"])
        position_m = float(np.linalg.norm(estimate[:3, 3] * scale - truth[:3, 3]))
        angle = (_axis_angle_deg if anchor["symmetric"] else _angle_deg)(estimate[:3, :3], truth[:3, :3])
        out[name] = {"position_m": position_m, "rotation_deg": angle, "symmetric": anchor["symmetric"]}
    return out


def _verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def check_against_truth(result: dict, scene_dir: Path, split: str = "arm") -> dict:
    """The workspace's figures against the world's truth, with a met/MISSED line per target."""
    scene_dir = Path(scene_dir)
    scale, world_T_nerf_true, sfm_rms, misregistered = true_nerf_frame(result, scene_dir, split)
    mpu_error = abs(result["metres_per_unit"] / scale - 1.0)
    kind = "arm" if result["scale_source"] == "arm" else "objects"
    check = {"true_metres_per_unit": scale, "metres_per_unit_error": mpu_error, "sfm_centre_rms_m": sfm_rms,
             "sfm_misregistered": misregistered}
    lines = [f"metres_per_unit {result['metres_per_unit']:.6f} vs true {scale:.6f}: {100 * mpu_error:.3f} % "
             f"(target {100 * TARGETS['metres_per_unit_' + kind]:.1f} %: "
             f"{_verdict(mpu_error, TARGETS['metres_per_unit_' + kind])}; SfM's centres fit the true ones to "
             f"{1000 * sfm_rms:.1f} mm rms, {misregistered} misregistered)"]
    robot_json = scene_dir / split / "robot.json"
    if kind == "arm" and robot_json.is_file():
        world_T_base = np.asarray(json.loads(robot_json.read_text())["truth"]["world_T_base"], dtype=np.float64)
        base_T_nerf_true = np.linalg.inv(world_T_base) @ world_T_nerf_true
        estimate = np.asarray(result["world_T_nerf"]["matrix"])
        t_err = float(np.linalg.norm(estimate[:3, 3] - base_T_nerf_true[:3, 3]))
        r_err = _angle_deg(estimate[:3, :3], base_T_nerf_true[:3, :3])
        check.update(world_T_nerf_error_m=t_err, world_T_nerf_error_deg=r_err)
        lines.append(f"world_T_nerf off by {1000 * t_err:.2f} mm / {r_err:.3f} deg (target 5 mm / 0.3 deg: "
                     f"{_verdict(t_err, TARGETS['world_T_nerf_m'])} / {_verdict(r_err, TARGETS['world_T_nerf_deg'])})")
    errors = anchor_errors(result, scene_dir, scale, world_T_nerf_true)
    check["anchors"] = errors
    for name, e in errors.items():
        lines.append(f"anchor {name}: {100 * e['position_m']:.2f} cm / {e['rotation_deg']:.2f} deg"
                     f"{' (axis)' if e['symmetric'] else ''} (target 1 cm / 3 deg: "
                     f"{_verdict(e['position_m'], TARGETS['anchor_m'])} / "
                     f"{_verdict(e['rotation_deg'], TARGETS['anchor_deg'])})")
    check["lines"] = lines
    return check
