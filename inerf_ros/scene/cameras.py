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
from inerf_ros.scene.world import Lighting, World, random_lighting, rng_for


@dataclasses.dataclass
class View:
    world_T_cam: np.ndarray           # (4, 4) optical frame
    lighting: Lighting
    distractors: list = dataclasses.field(default_factory=list)  # [(position, wxyz quaternion)]
    time: float | None = None         # seconds (arm trajectory)


def base_intrinsics(config: SceneConfig) -> Intrinsics:
    """The nerf/arm camera; rendered with square pixels, so fx is recorded as fy (see README)."""
    w, h = config.width, config.height
    fx = config.fx or 0.5 * w / math.tan(0.5 * math.radians(config.fov_x_deg))
    fy = config.fy or fx
    cx = config.cx if config.cx >= 0 else (w - 1) / 2
    cy = config.cy if config.cy >= 0 else (h - 1) / 2
    return Intrinsics(w, h, fy, fy, cx, cy)


def split_intrinsics(config: SceneConfig, split: str) -> Intrinsics:
    base = base_intrinsics(config)
    return base.scaled(config.posecnn_scale) if split.startswith("posecnn") else base


def nerf_views(config: SceneConfig) -> list[View]:
    """Hemisphere views: a Fibonacci spiral over equal-area elevation bands, aimed at ``look_at``."""
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


def _distractor_rest_height(shape: str, size: np.ndarray) -> float:
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
            position = np.array([xy[0], xy[1], _distractor_rest_height(shape, size)])
            if clear.all() and np.linalg.norm(position - eye) > 0.2:
                placements.append((position, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])))
        views.append(View(world_T_cam, lighting, placements))
    return views


def _ease(s: float) -> float:
    """Smoothstep (zero velocity at 0 and 1), clamped."""
    s = min(max(s, 0.0), 1.0)
    return s * s * (3.0 - 2.0 * s)


def arm_views(config: SceneConfig) -> list[View]:
    """A wrist camera approaching the table, then circling it once, at ``arm_fps`` (smooth: C1 poses).

    Distance and height blend from their start to their circling values over the first 30 % of the
    trajectory; the azimuth advances by one full turn with zero velocity at both ends; the camera
    aims at ``look_at`` plus a small smooth wobble, with a slow roll, as a hand-held wrist would.
    """
    rng = rng_for(config.seed, "arm")
    n = max(1, int(round(config.arm_duration_s * config.arm_fps)))
    target = np.asarray(config.look_at, float)
    a0 = rng.uniform(0, 2 * math.pi)
    phases = rng.uniform(0, 2 * math.pi, size=4)
    r_start, r_circle = config.arm_radius
    h_start, h_circle = config.arm_height
    views = []
    for i in range(n):
        t = i / config.arm_fps
        s = t / config.arm_duration_s
        blend = _ease(s / 0.3)
        radius = r_start + (r_circle - r_start) * blend
        height = h_start + (h_circle - h_start) * blend + 0.04 * math.sin(2 * math.pi * s * 2 + phases[0])
        azimuth = a0 + 2 * math.pi * (s - math.sin(2 * math.pi * s) / (2 * math.pi))
        eye = np.array([target[0] + radius * math.cos(azimuth), target[1] + radius * math.sin(azimuth), height])
        wobble = 0.03 * np.array([math.sin(2 * math.pi * 0.13 * t + phases[1]),
                                  math.sin(2 * math.pi * 0.17 * t + phases[2]), 0.0])
        roll = 0.08 * math.sin(2 * math.pi * 0.1 * t + phases[3])
        views.append(View(look_at(eye, target + wobble, roll_rad=roll), Lighting(), time=t))
    return views


def make_views(config: SceneConfig, world: World, split: str) -> list[View]:
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
