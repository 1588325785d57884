"""Camera sets of the demo world: NeRF hemisphere, randomised PoseCNN views, the arm's wrist camera.

Each set is a list of :class:`View` (``world_T_cam`` = optical frame) with its lighting and
distractor placement; all randomness comes from ``world.rng_for(seed, split)`` streams.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from inerf_ros.camera import Intrinsics
from inerf_ros.scene.config import SceneConfig
from inerf_ros.frames import look_at
from inerf_ros.robot import kinematics
from inerf_ros.robot.model import RobotModel, perturbed, rpy_pose
from inerf_ros.scene.world import Lighting, World, random_lighting, rng_for

# Largest joint change between two frames that is still motion (0.2 rad at 15 Hz = 172 deg/s, about the
# UR wrist limit); more is the solver jumping to another IK branch.
MAX_JOINT_STEP_RAD = 0.2
PATH_SAMPLES = 300


@dataclasses.dataclass
class View:
    """One camera to render: its pose, the lighting and the distractors placed for it."""

    world_T_cam: np.ndarray           # (4, 4) optical frame
    lighting: Lighting
    distractors: list = dataclasses.field(default_factory=list)  # [(position, wxyz quaternion)]
    time: float | None = None         # seconds (arm trajectory)
    joints: np.ndarray | None = None  # (6,) true joint angles of the arm, radians (arm trajectory)


def base_intrinsics(config: SceneConfig) -> Intrinsics:
    """The nerf/arm camera; rendered with square pixels, so fx is recorded as fy (see README)."""
    w, h = config.width, config.height
    fx = config.fx or 0.5 * w / math.tan(0.5 * math.radians(config.fov_x_deg))
    fy = config.fy or fx
    cx = config.cx if config.cx >= 0 else (w - 1) / 2
    cy = config.cy if config.cy >= 0 else (h - 1) / 2
    return Intrinsics(w, h, fy, fy, cx, cy)


def split_intrinsics(config: SceneConfig, split: str) -> Intrinsics:
    """The camera of ``split``: the base camera, scaled by ``posecnn_scale`` for the PoseCNN splits."""
    base = base_intrinsics(config)
    return base.scaled(config.posecnn_scale) if split.startswith("posecnn") else base


def nerf_views(config: SceneConfig) -> list[View]:
    """Hemisphere views: a Fibonacci spiral over equal-area elevation bands, aimed at ``look_at``
    (or a hand-held arc, :func:`arc_views`, when ``nerf_arc_deg`` > 0).
    """
    if config.nerf_arc_deg > 0:
        return arc_views(config)
    rng = rng_for(config.seed, "nerf")
    n = config.nerf_views
    el0, el1 = np.radians(config.nerf_elevation_deg)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    offset = rng.uniform(0, 2 * math.pi)
    target = np.asarray(config.look_at, float)
    views = []
    for i in range(n):
        sin_el = math.sin(el0) + (math.sin(el1) - math.sin(el0)) * (i + 0.5) / n
        elevation = math.asin(sin_el)
        azimuth = offset + i * golden
        radius = rng.uniform(*config.nerf_radius)
        eye = target + radius * np.array([math.cos(elevation) * math.cos(azimuth),
                                          math.cos(elevation) * math.sin(azimuth), sin_el])
        views.append(View(look_at(eye, target), Lighting()))
    return views


def arc_views(config: SceneConfig) -> list[View]:
    """A forward-facing hand-held capture: ``nerf_views`` photos walked along an arc of ``nerf_arc_deg``
    of azimuth on the -y side of ``look_at``, the camera aimed at ``look_at`` as a person would.

    A person walking sideways and pointing a phone does not hold a height, a distance or an aim
    exactly: the distance drifts within ``nerf_radius``, the elevation sweeps ``nerf_elevation_deg``
    twice (up and down as the walk goes on), and every shot has a few centimetres of aim error and a
    few degrees of roll. Seeded by the ``nerf`` stream of ``seed``.
    """
    rng = rng_for(config.seed, "nerf", "arc")
    n = config.nerf_views
    span = math.radians(config.nerf_arc_deg)
    el0, el1 = np.radians(config.nerf_elevation_deg)
    target = np.asarray(config.look_at, float)
    views = []
    for i in range(n):
        s = (i + 0.5) / n
        azimuth = -math.pi / 2 + span * (s - 0.5) + rng.normal(0.0, span / n / 4)
        elevation = el0 + (el1 - el0) * (0.5 - 0.5 * math.cos(4 * math.pi * s)) + rng.normal(0.0, math.radians(1.5))
        radius = rng.uniform(*config.nerf_radius)
        eye = target + radius * np.array([math.cos(elevation) * math.cos(azimuth),
                                          math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        aim = target + rng.normal(0.0, 0.04, size=3)
        views.append(View(look_at(eye, aim, roll_rad=rng.normal(0.0, math.radians(3.0))), Lighting()))
    return views


def distractor_rest_height(shape: str, size: np.ndarray) -> float:
    """Height (m) of a distractor's centre resting upright on the table; ``size`` as MuJoCo's geom size."""
    return {"box": size[2], "sphere": size[0], "cylinder": size[1], "capsule": size[0] + size[1],
            "ellipsoid": size[2]}[shape]


def posecnn_views(config: SceneConfig, world: World, split: str) -> list[View]:
    """Randomised views: camera around a point near the objects, random roll, lights and distractors."""
    rng = rng_for(config.seed, split)
    n = config.posecnn_train_views if split == "posecnn_train" else config.posecnn_test_views
    centres = np.array([obj.world_T_obj[:3, 3] for obj in world.objects])
    radii = np.array([0.5 * np.linalg.norm(obj.model.bbox[1][:2] - obj.model.bbox[0][:2]) for obj in world.objects])
    middle = centres.mean(axis=0)
    sx, sy = config.table_size
    views = []
    for _ in range(n):
        target = np.array([middle[0] + rng.normal(0, 0.08), middle[1] + rng.normal(0, 0.08), rng.uniform(0.0, 0.1)])
        azimuth = rng.uniform(0, 2 * math.pi)
        elevation = math.radians(rng.uniform(*config.posecnn_elevation_deg))
        radius = rng.uniform(*config.posecnn_radius)
        eye = target + radius * np.array([math.cos(elevation) * math.cos(azimuth),
                                          math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        world_T_cam = look_at(eye, target, roll_rad=rng.uniform(-0.35, 0.35))
        lighting = random_lighting(rng)
        placements = []
        for k in range(int(rng.integers(0, config.max_distractors + 1))):
            shape, size = world.distractor_shapes[k]
            xy = np.array([rng.uniform(-sx / 2 + 0.05, sx / 2 - 0.05), rng.uniform(-sy / 2 + 0.05, sy / 2 - 0.05)])
            yaw = rng.uniform(0, 2 * math.pi)
            clear = np.linalg.norm(centres[:, :2] - xy, axis=1) > radii + 0.08
            position = np.array([xy[0], xy[1], distractor_rest_height(shape, size)])
            if clear.all() and np.linalg.norm(position - eye) > 0.2:
                placements.append((position, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])))
        views.append(View(world_T_cam, lighting, placements))
    return views


def _ease(s: float) -> float:
    """Smoothstep (zero velocity at 0 and 1), clamped."""
    s = min(max(s, 0.0), 1.0)
    return s * s * (3.0 - 2.0 * s)


def arm_robot(config: SceneConfig) -> tuple[RobotModel, RobotModel]:
    """The arm of the ``arm`` split: (true model, the robot's believed model) from ``config.robot``."""
    rc = config.robot_config()
    truth = RobotModel(rc.model, rpy_pose(rc.base_xyz, rc.base_rpy_deg), rpy_pose(rc.hand_eye_xyz, rc.hand_eye_rpy_deg))
    believed = perturbed(truth, rng_for(rc.seed, "robot", "believed"),
                         base_error_m=rc.base_error[0] / 100.0, base_error_deg=rc.base_error[1],
                         hand_eye_error_m=rc.hand_eye_error[0] / 100.0, hand_eye_error_deg=rc.hand_eye_error[1])
    return truth, believed


def arm_path(config: SceneConfig, times=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The designed wrist-camera path: times (n,) and ``world_T_cam`` (optical) per frame, before IK.

    ``times`` (seconds) samples it elsewhere than at the frames ``k / arm_fps``.

    Distance and height blend from their start to their circling values over the first 30 % of the
    trajectory. The azimuth about ``look_at`` runs from ``arm_azimuth_deg[0]`` to ``[1]`` (the
    shipped config: one full turn, which the UR10e beside the table reaches with its elbow bent;
    a smaller arm or a farther base needs a shorter arc): part of it slowly over the whole
    trajectory, ``arm_fast_share`` of it in a fast sweep inside ``arm_fast_segment``, both with zero
    speed at their ends (C1). The camera aims at ``look_at`` plus a small smooth wobble, with a slow
    roll, as a hand-held wrist would.
    """
    rng = rng_for(config.seed, "arm")
    n = max(1, int(round(config.arm_duration_s * config.arm_fps)))
    target = np.asarray(config.look_at, float)
    a0, a1 = np.radians(config.arm_azimuth_deg)
    fast0, fast1 = config.arm_fast_segment
    share = config.arm_fast_share
    phases = rng.uniform(0, 2 * math.pi, size=4)
    r_start, r_circle = config.arm_radius
    h_start, h_circle = config.arm_height
    times = np.arange(n) / config.arm_fps if times is None else np.asarray(times, dtype=np.float64)
    poses = []
    for t in times:
        s = t / config.arm_duration_s
        blend = _ease(s / 0.3)
        radius = r_start + (r_circle - r_start) * blend
        height = h_start + (h_circle - h_start) * blend + 0.04 * math.sin(2 * math.pi * s * 2 + phases[0])
        slow = s - math.sin(2 * math.pi * s) / (2 * math.pi)
        azimuth = a0 + (a1 - a0) * ((1 - share) * slow + share * _ease((s - fast0) / (fast1 - fast0)))
        eye = np.array([target[0] + radius * math.cos(azimuth), target[1] + radius * math.sin(azimuth), height])
        wobble = 0.03 * np.array([math.sin(2 * math.pi * 0.13 * t + phases[1]),
                                  math.sin(2 * math.pi * 0.17 * t + phases[2]), 0.0])
        roll = 0.08 * math.sin(2 * math.pi * 0.1 * t + phases[3])
        poses.append(look_at(eye, target + wobble, roll_rad=roll))
    return times, poses


def _follow(robot: RobotModel, poses: list[np.ndarray], q_start: np.ndarray) -> np.ndarray | None:
    """IK along the path, each frame seeded with the previous solution; None if a frame fails or jumps."""
    q, out = q_start, []
    for world_T_cam in poses:
        try:
            q_next = robot.camera_ik(world_T_cam, q)
        except kinematics.IKError:
            return None
        if out and np.max(np.abs(q_next - q)) > MAX_JOINT_STEP_RAD:
            return None  # a branch flip, not a motion
        q = q_next
        out.append(q)
    return np.array(out)


def solve_arm_joints(robot: RobotModel, poses: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """Joint angles (n, 6) that follow the camera poses, on the best-conditioned IK branch.

    Each distinct IK solution of the first pose (found from fixed random seeds) is followed along the
    whole path; the one whose smallest manipulability along the path is largest wins, so the arm
    stays away from singularities. Raises ``ValueError`` when no branch reaches every frame.
    """
    rng = rng_for(seed, "arm", "ik")
    starts: list[np.ndarray] = []
    for q_seed in rng.uniform(-math.pi, math.pi, size=(48, 6)):
        try:
            q = robot.camera_ik(poses[0], q_seed)
        except kinematics.IKError:
            continue
        q = (q + math.pi) % (2 * math.pi) - math.pi
        if not any(np.allclose(q, other, atol=1e-6) for other in starts):
            starts.append(q)
    best, best_score = None, -1.0
    for q_start in starts:
        joints = _follow(robot, poses, q_start)
        if joints is None:
            continue
        score = float(kinematics.manipulability(robot.table, joints).min())
        if score > best_score:
            best, best_score = joints, score
    if best is None:
        raise ValueError(f"the {robot.arm} at {np.round(robot.world_T_base[:3, 3], 3).tolist()} cannot follow the "
                         "arm camera path on one IK branch; move robot.base_xyz or shorten arm_azimuth_deg")
    return best


def arm_views(config: SceneConfig) -> list[View]:
    """The wrist camera of a UR arm beside the table, at ``arm_fps`` (see :func:`arm_path`).

    The designed path is solved by IK on the true arm (:func:`solve_arm_joints`); every view's pose
    is the true forward kinematics of its joint angles, so images, poses and joints agree exactly.
    """
    times, poses = arm_path(config)
    truth, _ = arm_robot(config)
    # IK is followed on a path sampled at least PATH_SAMPLES times, so even a short, fast test path
    # moves the joints little between samples and the solver cannot jump branches unnoticed.
    substeps = max(1, math.ceil(PATH_SAMPLES / len(times)))
    fine_times = (np.arange((len(times) - 1) * substeps + 1) / substeps) / config.arm_fps
    _, fine_poses = arm_path(config, fine_times)
    joints = solve_arm_joints(truth, fine_poses, config.seed)[::substeps]
    world_T_cams = truth.world_T_camera(joints)
    return [View(world_T_cam, Lighting(), time=float(t), joints=q)
            for t, world_T_cam, q in zip(times, world_T_cams, joints)]


def rotation_speed_deg_s(views: list[View]) -> np.ndarray:
    """Camera rotation speed between consecutive views (n-1,), degrees per second."""
    speeds = []
    for a, b in zip(views[:-1], views[1:]):
        cos_angle = np.clip((np.trace(a.world_T_cam[:3, :3].T @ b.world_T_cam[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
        speeds.append(math.degrees(math.acos(cos_angle)) / (b.time - a.time))
    return np.array(speeds)


def make_views(config: SceneConfig, world: World, split: str) -> list[View]:
    """The views of ``split`` (``nerf``, ``posecnn_train``, ``posecnn_test`` or ``arm``)."""
    if split == "nerf":
        return nerf_views(config)
    if split in ("posecnn_train", "posecnn_test"):
        return posecnn_views(config, world, split)
    if split == "arm":
        return arm_views(config)
    raise ValueError(f"unknown split {split!r}")


def check_views(world: World, split: str, views: list[View]) -> None:
    """Raise ``ValueError`` naming the first view whose camera is inside an object, the table or the floor."""
    for k, view in enumerate(views):
        where = world.camera_collision(view.world_T_cam)
        if where is not None:
            raise ValueError(f"{split} view {k}: camera at {np.round(view.world_T_cam[:3, 3], 3).tolist()} "
                             f"is inside {where}; change the camera set's radius/elevation or the object poses")
