"""A UR arm placed in the world with a wrist camera: its true model, the robot's believed model, its TF.

``RobotModel`` is what a URDF + calibration says: the DH table, where the base stands
(``world_T_base``) and the hand-eye transform ``tool0_T_camera_optical``. The demo world renders with
the *true* model; the bag's TF is published from a *believed* model (:func:`perturbed`), as a real
robot's calibration is always a little off, plus encoder noise on the reported joint angles.

Frames (names as in Universal Robots' description; the link frames themselves are the DH frames of
``kinematics``, not the URDF's visual frames): ``base_link -> shoulder_link -> upper_arm_link ->
forearm_link -> wrist_1_link -> wrist_2_link -> wrist_3_link`` (one revolute joint each, on /tf), then
fixed ``wrist_3_link -> tool0`` (identity: DH frame 6 is the flange), ``tool0 -> camera_link`` (the
hand-eye calibration; REP 103 body frame: x forward, y left, z up) and ``camera_link ->
camera_color_optical_frame`` (REP 103 optical: x right, y down, z forward), on /tf_static.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from inerf_ros.robot import kinematics

JOINT_NAMES = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
               "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
LINK_NAMES = ("base_link", "shoulder_link", "upper_arm_link", "forearm_link",
              "wrist_1_link", "wrist_2_link", "wrist_3_link")
TOOL_FRAME = "tool0"
CAMERA_LINK = "camera_link"
OPTICAL_FRAME = "camera_color_optical_frame"

# camera_link (x forward, y left, z up) -> optical (x right, y down, z forward): the fixed REP 103 turn.
CAMERA_LINK_T_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0],
                                  [-1.0, 0.0, 0.0, 0.0],
                                  [0.0, -1.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 1.0]])


def rpy_pose(xyz, rpy_deg) -> np.ndarray:
    """4x4 pose from a translation (metres) and extrinsic roll, pitch, yaw about x, y, z (degrees)."""
    r, p, y = np.radians(np.asarray(rpy_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx
    pose[:3, 3] = np.asarray(xyz, dtype=np.float64)
    return pose


def axis_angle(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation matrix (3, 3) about a unit axis (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * k @ k


def pose_difference(a_T_x: np.ndarray, a_T_y: np.ndarray) -> tuple[float, float]:
    """(translation in metres, rotation in degrees) between two poses of the same frame."""
    translation = float(np.linalg.norm(a_T_x[:3, 3] - a_T_y[:3, 3]))
    cos_angle = np.clip((np.trace(a_T_x[:3, :3].T @ a_T_y[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    return translation, math.degrees(math.acos(cos_angle))


def _offset(pose: np.ndarray, rng: np.random.Generator, translation_m: float, rotation_deg: float) -> np.ndarray:
    """``pose`` moved by exactly ``translation_m`` and turned by exactly ``rotation_deg`` (random directions)."""
    direction, axis = rng.normal(size=3), rng.normal(size=3)
    out = pose.copy()
    out[:3, 3] += translation_m * direction / np.linalg.norm(direction)
    out[:3, :3] = axis_angle(axis, math.radians(rotation_deg)) @ pose[:3, :3]
    return out


@dataclasses.dataclass
class RobotModel:
    """A UR arm in the world: DH table name, base placement, hand-eye transform (all metres)."""

    arm: str = "ur10e"                                                  # a key of kinematics.UR_DH
    world_T_base: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
    tool0_T_camera_optical: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
    joint_names: tuple = JOINT_NAMES
    link_names: tuple = LINK_NAMES

    def __post_init__(self) -> None:
        self.table = kinematics.dh_table(self.arm)
        for name in ("world_T_base", "tool0_T_camera_optical"):
            pose = np.asarray(getattr(self, name), dtype=np.float64)
            if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
                raise ValueError(f"{name} must be a finite 4x4 pose")
            setattr(self, name, pose)

    @property
    def tool0_T_camera_link(self) -> np.ndarray:
        """(4, 4) the camera_link frame in the flange frame (tool0), metres."""
        return self.tool0_T_camera_optical @ np.linalg.inv(CAMERA_LINK_T_OPTICAL)

    def base_T_camera(self, q) -> np.ndarray:
        """Optical frame in the base frame, (..., 4, 4) for joint angles (..., 6)."""
        return kinematics.tool0(self.table, q) @ self.tool0_T_camera_optical

    def world_T_camera(self, q) -> np.ndarray:
        """Optical frame in the world, (..., 4, 4): the wrist camera's pose at joint angles (..., 6)."""
        return self.world_T_base @ self.base_T_camera(q)

    def camera_ik(self, world_T_camera: np.ndarray, q_seed) -> np.ndarray:
        """Joint angles (6,) that put the optical frame at ``world_T_camera``, on the seed's branch."""
        base_T_tool0 = np.linalg.inv(self.world_T_base) @ world_T_camera @ np.linalg.inv(self.tool0_T_camera_optical)
        return kinematics.inverse(self.table, base_T_tool0, q_seed)

    def tf_chain(self, q) -> list[tuple[str, str, np.ndarray, bool]]:
        """The TF of the whole chain as robot_state_publisher publishes it from one joint state.

        Returns ``(parent, child, parent_T_child, is_static)``: the six joints (dynamic, /tf) from
        ``q`` (6,), then the fixed ``wrist_3_link -> tool0 -> camera_link -> optical`` (/tf_static).
        Not included: the base placement (``world -> base_link``), which the localizer estimates.
        """
        steps = kinematics.link_transforms(self.table, np.asarray(q, dtype=np.float64).reshape(6))
        chain = [(self.link_names[i], self.link_names[i + 1], steps[i], False) for i in range(6)]
        return chain + self.static_chain()

    def static_chain(self) -> list[tuple[str, str, np.ndarray, bool]]:
        """The fixed links past the last joint, as (parent, child, parent_T_child, static) for /tf_static."""
        return [(self.link_names[-1], TOOL_FRAME, np.eye(4), True),
                (TOOL_FRAME, CAMERA_LINK, self.tool0_T_camera_link, True),
                (CAMERA_LINK, OPTICAL_FRAME, CAMERA_LINK_T_OPTICAL.copy(), True)]

    def to_dict(self) -> dict:
        """The model as JSON-ready values (poses as nested lists, metres)."""
        return {"arm": self.arm, "world_T_base": self.world_T_base.tolist(),
                "tool0_T_camera_optical": self.tool0_T_camera_optical.tolist(),
                "joint_names": list(self.joint_names), "link_names": list(self.link_names)}

    @classmethod
    def from_dict(cls, values: dict) -> "RobotModel":
        """The model from :meth:`to_dict`'s values (missing frame names get the UR defaults)."""
        return cls(values["arm"], np.array(values["world_T_base"]), np.array(values["tool0_T_camera_optical"]),
                   tuple(values.get("joint_names", JOINT_NAMES)), tuple(values.get("link_names", LINK_NAMES)))


def perturbed(truth: RobotModel, rng: np.random.Generator, *, base_error_m: float, base_error_deg: float,
              hand_eye_error_m: float, hand_eye_error_deg: float) -> RobotModel:
    """The robot's believed model: the truth with the base placement and the hand-eye transform off.

    Each error has exactly the given size, in a random direction (translation) and about a random
    axis (rotation, applied in the parent frame), drawn from ``rng``: seeded, reproducible.
    """
    return dataclasses.replace(
        truth, world_T_base=_offset(truth.world_T_base, rng, base_error_m, base_error_deg),
        tool0_T_camera_optical=_offset(truth.tool0_T_camera_optical, rng, hand_eye_error_m, hand_eye_error_deg))


def reported_joints(q_true, rng: np.random.Generator, noise_deg: float) -> np.ndarray:
    """Joint angles as the encoders report them: the truth plus Gaussian noise of ``noise_deg`` (1 sigma)."""
    q_true = np.asarray(q_true, dtype=np.float64)
    return q_true + rng.normal(0.0, math.radians(noise_deg), size=q_true.shape)
