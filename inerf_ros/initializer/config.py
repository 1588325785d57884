"""The initializer's configuration: the object table (poses in the NeRF frame), gates and fusion.

One dataclass feeds initializer_node's ROS parameters and the CLI's flags (:mod:`inerf_ros.config`);
:func:`load_config` reads it from YAML (``config/initializer.yaml``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import yaml
from scipy.spatial.transform import Rotation

from inerf_ros import config as config_tools

MODES = ("full", "distance_only")
FUSIONS = ("auto", "average", "alignment", "bearings")


@dataclasses.dataclass
class InitializerConfig:
    """Camera prior from object poses (see :mod:`inerf_ros.initializer` for frames and units)."""

    mode: str = config_tools.option("full", "full: object 6-DoF poses in the NeRF frame are known; distance_only: "
                                    "only their positions (needs a camera hint)", choices=MODES)
    metres_per_unit: float = config_tools.option(1.0, "metres per NeRF unit (detections are in metres)",
                                                 range=(1e-9, 1e9))
    object_poses: list = config_tools.option(
        [], "known objects in the NeRF frame, NeRF units: 'class_name x y z [qx qy qz qw]' per entry "
        "(a YAML mapping class_name: [x, y, z, qx, qy, qz, qw], or make-scene's objects.yaml entries, work too)")
    symmetric_classes: list = config_tools.option(
        [], "classes symmetric about their z axis (continuous_z): in full mode their detected rotation is not "
        "used; their positions join the alignment fusion when they agree with the consensus")
    camera_hint: list = config_tools.option(
        [], "distance_only: static camera hint nerf_T_cam as [x, y, z, qx, qy, qz, qw] (NeRF units, ROS optical "
        "camera); a hint passed to estimate() takes precedence")
    min_score: float = config_tools.option(0.3, "detections with a lower score are ignored", range=(0.0, 1.0))
    min_visible_fraction: float = config_tools.option(
        0.1, "detections whose visible fraction is known and lower are ignored", range=(0.0, 1.0))
    max_object_distance_m: float = config_tools.option(
        100.0, "detections farther than this from the camera are ignored (metres): a detector fed an absurd "
        "camera_info reports objects at 1e297 m, which no solver survives", range=(1e-6, 1e9))
    max_detections: int = config_tools.option(
        32, "only the best-scored this many detections that pass the gates are fused: the consensus compares "
        "every pair and the solvers draw subsets, so a flood of detections must not grow without bound",
        range=(1, 10000))
    inlier_rotation_deg: float = config_tools.option(
        20.0, "hypotheses whose camera rotations differ by more than this disagree (degrees)", range=(0.0, 180.0))
    inlier_translation_m: float = config_tools.option(
        0.15, "hypotheses whose camera centres differ by more than this disagree (metres)", range=(0.0, 1e6))
    fusion: str = config_tools.option(
        "auto", "average: robust mean of the per-detection camera poses; alignment: camera pose that best maps "
        "the detected object positions onto the known ones (Kabsch; ignores detected rotations; needs 3 spread "
        "objects); bearings: PnP on the directions of the detected object centres (ignores detected depths and "
        "rotations: a detector's depth fails first with distance; needs 4 objects); auto: bearings, else "
        "alignment, else average, whichever is possible first", choices=FUSIONS)
    bearing_inlier_deg: float = config_tools.option(
        2.0, "bearings: an object is an inlier when the fitted camera sees its centre within this angle of "
        "where it was detected (degrees)", range=(0.01, 90.0))
    joint_range_sigma: float = config_tools.option(
        0.05, "bearings: the camera found from the directions is then refined on the detected distances too, "
        "with this relative standard deviation (0.05: 5 % of the distance; 0: directions only), up to a common "
        "scale fitted with it (a detector's distances are often all biased alike). The directions of nearly "
        "coplanar objects seen from afar leave rotation and translation trading off against each other; "
        "relative distances and rotations settle that", range=(0.0, 1e6))
    joint_rotation_sigma_deg: float = config_tools.option(
        10.0, "bearings: standard deviation of the detected rotations of asymmetric objects in that refinement "
        "(degrees; 0: not used)", range=(0.0, 180.0))
    joint_bearing_sigma_deg: float = config_tools.option(
        0.5, "bearings: standard deviation of the detected directions in that refinement (degrees)",
        range=(1e-6, 90.0))
    alignment_min_spread_m: float = config_tools.option(
        0.05, "alignment needs the objects to spread at least this much in two directions (metres)",
        range=(0.0, 1e6))
    alignment_inlier_m: float = config_tools.option(
        0.05, "alignment: an object is an inlier when its detected position is within this of where the "
        "aligned camera sees it (metres)", range=(0.0, 1e6))
    robust_iterations: int = config_tools.option(20, "Weiszfeld iterations of the robust means", range=(0, 1000))
    min_sigma_translation_m: float = config_tools.option(
        0.01, "floor of the translation standard deviation (metres)", range=(0.0, 1e6))
    min_sigma_rotation_deg: float = config_tools.option(
        1.0, "floor of the rotation standard deviation (degrees)", range=(0.0, 180.0))
    single_sigma_translation_m: float = config_tools.option(
        0.05, "translation standard deviation of a prior from one detection (metres)", range=(0.0, 1e6))
    single_sigma_rotation_deg: float = config_tools.option(
        5.0, "rotation standard deviation of a prior from one detection (degrees)", range=(0.0, 180.0))

    def __post_init__(self) -> None:
        if isinstance(self.object_poses, dict):  # YAML mapping -> the flat, ROS-parameter-friendly form
            self.object_poses = [
                f"{name} " + " ".join(repr(float(v)) for v in _as_list(values, f"object_poses[{name!r}]"))
                for name, values in self.object_poses.items()]
        self.object_poses = list(self.object_poses)
        self.camera_hint = [float(v) for v in self.camera_hint]

    def check(self) -> None:
        """Parse the object table and the hint (called by :func:`inerf_ros.config.validate`)."""
        self.nerf_T_objects()
        if self.camera_hint:
            pose_from_list(self.camera_hint, "camera_hint")

    def nerf_T_objects(self) -> dict[str, np.ndarray]:
        """{class_name: nerf_T_obj 4x4}; position-only entries get an identity rotation (flagged in
        :meth:`positions_only`).
        """
        table = {}
        for entry in self.object_poses:
            parts = str(entry).split()
            if len(parts) not in (4, 8):
                raise ValueError(f"object_poses entry {entry!r}: expected 'class_name x y z [qx qy qz qw]'")
            name = parts[0]
            try:
                values = [float(v) for v in parts[1:]]
            except ValueError:
                raise ValueError(f"object_poses entry {entry!r}: the numbers do not parse") from None
            if name in table:
                raise ValueError(f"object_poses: class {name!r} is listed twice")
            table[name] = pose_from_list(values, f"object_poses[{name!r}]")
        return table

    def positions_only(self) -> set[str]:
        """Class names whose ``object_poses`` entry gives a position only (x y z, no rotation)."""
        return {str(e).split()[0] for e in self.object_poses if len(str(e).split()) == 4}


def _as_list(values: Any, name: str) -> list:
    if isinstance(values, dict):  # make-scene's objects.yaml entry, or {position, quaternion_xyzw}
        if "nerf_T_obj" in values:
            matrix = np.asarray(values["nerf_T_obj"], dtype=np.float64)
            if matrix.shape != (4, 4):
                raise ValueError(f"{name}: nerf_T_obj must be 4x4, got shape {matrix.shape}")
            return list(matrix[:3, 3]) + list(Rotation.from_matrix(matrix[:3, :3]).as_quat())
        quaternion = values.get("quaternion_xyzw", values.get("orientation_xyzw", []))
        values = list(values.get("position", [])) + list(quaternion)
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name}: expected a list [x, y, z, (qx, qy, qz, qw)], got {values!r}")
    return list(values)


def pose_from_list(values: Sequence[float], name: str) -> np.ndarray:
    """4x4 pose from [x, y, z] or [x, y, z, qx, qy, qz, qw] (quaternion normalised, ROS order)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape not in ((3,), (7,)) or not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: expected 3 or 7 finite numbers [x y z (qx qy qz qw)], got {values.tolist()}")
    pose = np.eye(4)
    pose[:3, 3] = values[:3]
    if values.shape == (7,):
        quat = values[3:]
        if np.linalg.norm(quat) < 1e-9:
            raise ValueError(f"{name}: the quaternion has zero length")
        pose[:3, :3] = Rotation.from_quat(quat / np.linalg.norm(quat)).as_matrix()
    return pose


def load_config(path, section: Optional[str] = "initializer") -> InitializerConfig:
    """:class:`InitializerConfig` from a YAML file (its ``section`` mapping, or the whole file)."""
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if section and section in data:
        data = data[section]
    try:
        return config_tools.from_dict(InitializerConfig, data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
