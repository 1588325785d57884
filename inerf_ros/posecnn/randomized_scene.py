r"""``inerf-ros make-posecnn-data``: domain-randomized PoseCNN training frames of a scene's objects.

The scene's own ``posecnn_train`` split shows one fixed arrangement on one wooden table under two lights;
a detector trained on it learns that context. Here every frame draws a new world around the same objects:

- the objects: a random subset, each upright or lying on a side, at a random place and yaw on the table
  (a share of the frames keeps the scene's own arrangement);
- the surfaces: table, floor and distractors take a texture from a pool (wood, tiles, noise, stripes,
  plain colours, photo-like clutter) and a random tint;
- the lights: one to three spot lights of random colour and intensity, each casting shadows or not,
  a directional fill and an ambient level;
- the camera: 0.3-1.5 m from a point near a random object (so objects also sit at the image border),
  elevation and roll at random; distractor shapes between and around the objects occlude them.

Image-space effects of a real camera (exposure, white balance, noise, blur, JPEG, photo backgrounds) are
applied on the fly in training (:mod:`inerf_ros.posecnn.randomize`). The frames are written in the
scene's BOP-like layout (``inerf_ros/scene/README.md``), so ``train-posecnn --scene`` and
``eval-posecnn --scene`` read them, and ``inerf_ros.posecnn.bop`` exports them to a BOP folder.

Example::

    inerf-ros make-posecnn-data --config config/scenes/props_like.yaml --mesh-dir ../shared/data/ycb_sim \
        --out data_cache/posecnn_ycb --train-views 1500 --test-views 100
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from inerf_ros import config as config_tools
from inerf_ros.config import option
from inerf_ros.frames import look_at
from inerf_ros.scene import cameras, textures
from inerf_ros.scene.cameras import View, distractor_rest_height
from inerf_ros.scene.commands import render_split, write_models
from inerf_ros.scene.config import config_to_yaml, load_scene_config
from inerf_ros.scene.mesh_folder import read_mesh_folder
from inerf_ros.scene.world import Lighting, SceneRenderer, World, rng_for

TEXTURE_POOL = 32          # textures compiled into the model; each frame picks from them
EXTRA_LIGHTS = 2           # spot lights besides the world's key light
HIDDEN_OBJECT_Z = 50.0     # unused objects wait above the table: out of every downward view, above every light
# Rotations that rest an object on one of its six box faces (applied before the random yaw).
_RESTING = (np.eye(3), np.diag([1.0, -1.0, -1.0]),
            np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
            np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]), np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]))


@dataclasses.dataclass
class RandomizationConfig:
    """Domain randomization of the rendered PoseCNN frames (geometry, surfaces, lights, camera)."""

    train_views: int = option(1500, "randomized frames of posecnn_train", range=(0, 1000000))
    test_views: int = option(100, "randomized frames of posecnn_test (held out: another seed stream)",
                             range=(0, 1000000))
    seed: int = option(0, "seed of the randomization (the scene's own seed builds the objects)", range=(0, 2**31 - 1))
    scale: float = option(0.5, "image size relative to the scene's width x height", range=(0.05, 4.0))
    distance: list = option([0.3, 1.5], "min, max camera distance from its target point, metres")
    elevation_deg: list = option([15.0, 85.0], "min, max camera elevation above the table, degrees")
    roll_deg: float = option(30.0, "camera roll up to +- this, degrees", range=(0.0, 180.0))
    target_jitter: float = option(0.08, "1 sigma of the camera target around an object, metres (objects "
                                  "at the image border)", range=(0.0, 1.0))
    scene_layout_share: float = option(0.25, "share of frames keeping the scene's own object arrangement",
                                       range=(0.0, 1.0))
    min_objects: int = option(3, "at least this many objects per frame (random layouts)", range=(1, 255))
    lying_share: float = option(0.3, "share of objects lying on a side instead of upright", range=(0.0, 1.0))
    max_distractors: int = option(8, "up to this many distractor shapes per frame", range=(0, 16))
    surfaces: bool = option(True, "random textures and tints of table, floor and distractors")
    lights: bool = option(True, "random light count, colour, intensity and shadows")


@dataclasses.dataclass
class FrameState(Lighting):
    """Everything one randomized frame sets in the world: the lights of :class:`Lighting` plus the rest."""

    object_poses: tuple = ()     # world_T_obj per instance (None: hidden)
    materials: tuple = ()        # (material name, texture index or -1, rgba) per randomized material
    extra_lights: tuple = ()     # (active, pos, diffuse, castshadow) per extra light
    key_castshadow: bool = True


class RandomizedWorld(World):
    """The scene's world with a pool of surface textures and extra lights compiled in, set per frame."""

    def __init__(self, config, randomization: RandomizationConfig, max_size=None):
        self.randomization = randomization
        super().__init__(config, max_size)
        # lazy: mujoco must load after scene.world has picked its GL back end (MUJOCO_GL)
        import mujoco

        self.scene_poses = [obj.world_T_obj.copy() for obj in self.objects]
        self.diameters = [float(obj.model.diameter) for obj in self.objects]  # a property that scans the mesh
        name = mujoco.mjtObj
        self.pool_ids = [mujoco.mj_name2id(self.model, name.mjOBJ_TEXTURE, f"pool_{k}") for k in range(TEXTURE_POOL)]
        self.object_bodies = [mujoco.mj_name2id(self.model, name.mjOBJ_BODY, f"obj_{o.instance_id}")
                              for o in self.objects]
        self.extra_light_ids = [mujoco.mj_name2id(self.model, name.mjOBJ_LIGHT, f"extra_{k}")
                                for k in range(EXTRA_LIGHTS)]
        self.key_light_id = mujoco.mj_name2id(self.model, name.mjOBJ_LIGHT, "key")
        self.surface_materials = ["wood", "floor"] + [f"distractor_{k}" for k in range(config.max_distractors)]

    def _mjcf(self, width: int, height: int) -> tuple[str, dict]:
        xml, assets = super()._mjcf(width, height)
        rng = rng_for(self.randomization.seed, "randomized-texture-pool")
        pool = []
        for k in range(TEXTURE_POOL):
            assets[f"pool_{k}.png"] = _png(textures.random_surface(rng, 256))
            pool.append(f'    <texture name="pool_{k}" type="2d" file="pool_{k}.png"/>')
        lights = [f'    <light name="extra_{k}" mode="targetbody" target="world" pos="0 0 2" diffuse="0 0 0"'
                  ' specular="0.2 0.2 0.2" cutoff="70" castshadow="false" active="false"/>'
                  for k in range(EXTRA_LIGHTS)]
        xml = xml.replace("  </asset>", "\n".join(pool) + "\n  </asset>", 1)
        return xml.replace("  </worldbody>", "\n".join(lights) + "\n  </worldbody>", 1), assets

    def set_lighting(self, lighting: Lighting) -> None:
        """The lights, and for a :class:`FrameState` also the object poses, surfaces and extra lights."""
        super().set_lighting(lighting)
        if not isinstance(lighting, FrameState):
            return
        # lazy: mujoco must load after scene.world has picked its GL back end (MUJOCO_GL)
        import mujoco

        m = self.model
        for obj, body, pose in zip(self.objects, self.object_bodies, lighting.object_poses):
            if pose is None:  # hidden: far above, its id stays in the ground truth with nothing visible
                pose = _hidden_pose(obj)
            obj.world_T_obj = pose
            m.body_pos[body] = pose[:3, 3]
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, np.ascontiguousarray(pose[:3, :3]).ravel())
            m.body_quat[body] = quat
        for material, texture, rgba in lighting.materials:
            mat = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, material)
            if texture >= 0:
                m.mat_texid[mat, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = self.pool_ids[texture]
            m.mat_rgba[mat] = rgba
        m.light_castshadow[self.key_light_id] = lighting.key_castshadow
        for light, (active, pos, diffuse, shadow) in zip(self.extra_light_ids, lighting.extra_lights):
            m.light_active[light] = active
            m.light_pos[light] = pos
            m.light_diffuse[light] = diffuse
            m.light_castshadow[light] = shadow


def _png(image_rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image_rgb[:, :, ::-1]))
    if not ok:
        raise ValueError("could not encode a texture as PNG")
    return data.tobytes()


def _hidden_pose(obj) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, 3] = [0.0, 0.0, HIDDEN_OBJECT_Z + obj.instance_id]
    return pose


def _resting_pose(obj, rng: np.random.Generator, lying: bool, xy: np.ndarray) -> np.ndarray:
    rest = _RESTING[int(rng.integers(1, 6))] if lying else _RESTING[0]
    yaw = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]) @ rest
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = [xy[0], xy[1], -float((obj.model.vertices @ rotation.T)[:, 2].min())]
    return pose


def random_layout(world: RandomizedWorld, rng: np.random.Generator) -> list:
    """world_T_obj per object (None: not on the table this frame); no two footprints overlap."""
    r = world.randomization
    if rng.random() < r.scene_layout_share:
        return [pose.copy() for pose in world.scene_poses]
    sx, sy = world.config.table_size
    n = len(world.objects)
    count = int(rng.integers(min(r.min_objects, n), n + 1))
    chosen = set(rng.permutation(n)[:count].tolist())
    poses, placed = [None] * n, []
    for k in rng.permutation(n).tolist():
        if k not in chosen:
            continue
        obj = world.objects[k]
        radius = 0.5 * world.diameters[k] * 0.8  # footprint: most objects fill less than their diameter's circle
        for _ in range(30):
            xy = np.array([rng.uniform(-sx / 2 + radius, sx / 2 - radius),
                           rng.uniform(-sy / 2 + radius, sy / 2 - radius)])
            if all(np.linalg.norm(xy - p) > radius + q for p, q in placed):
                poses[k] = _resting_pose(obj, rng, rng.random() < r.lying_share, xy)
                placed.append((xy, radius))
                break
    return poses


def _surfaces(world: RandomizedWorld, rng: np.random.Generator) -> tuple:
    out = []
    for material in world.surface_materials:
        texture = int(rng.integers(TEXTURE_POOL)) if rng.random() < 0.8 else -1  # -1: keep the current one
        tint = np.append(rng.uniform(0.55, 1.0, size=3) if rng.random() < 0.5 else np.ones(3), 1.0)
        out.append((material, texture, tint))
    return tuple(out)


def _lights(rng: np.random.Generator) -> tuple[Lighting, tuple, bool]:
    """The key light and the extra spot lights: colour temperature-like tints, intensities, shadows."""
    def spot():
        azimuth, elevation = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(20, 88))
        distance = rng.uniform(0.8, 3.0)
        pos = distance * np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                                   math.sin(elevation)])
        warm = rng.uniform(-1, 1)  # warm (tungsten) to cool (daylight, LED)
        tint = np.array([1.0 + 0.15 * warm, 1.0, 1.0 - 0.2 * warm]) * rng.uniform(0.9, 1.0, size=3)
        return pos, np.clip(rng.uniform(0.2, 1.0) * tint, 0, 1)

    key_pos, key_diffuse = spot()
    fill = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -1.0])
    lighting = Lighting(tuple(key_pos), tuple(key_diffuse), tuple(fill), tuple(rng.uniform(0.0, 0.35) * np.ones(3)),
                        tuple(rng.uniform(0.05, 0.45) * rng.uniform(0.85, 1.0, size=3)))
    extra = []
    for _ in range(EXTRA_LIGHTS):
        pos, diffuse = spot()
        extra.append((bool(rng.random() < 0.4), tuple(pos), tuple(0.6 * diffuse), bool(rng.random() < 0.5)))
    return lighting, tuple(extra), bool(rng.random() < 0.85)


def _camera(world: RandomizedWorld, poses: list, rng: np.random.Generator) -> np.ndarray | None:
    r = world.randomization
    centres = [p[:3, 3] for p in poses if p is not None]
    target = centres[int(rng.integers(len(centres)))] + np.append(rng.normal(0, r.target_jitter, 2), 0.0)
    for _ in range(20):
        azimuth = rng.uniform(0, 2 * math.pi)
        elevation = math.radians(rng.uniform(*r.elevation_deg))
        distance = rng.uniform(*r.distance)
        eye = target + distance * np.array([math.cos(elevation) * math.cos(azimuth),
                                            math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
        world_T_cam = look_at(eye, target, roll_rad=math.radians(rng.uniform(-r.roll_deg, r.roll_deg)))
        if world.camera_collision(world_T_cam, margin=0.03) is None:
            return world_T_cam
    return None


def _distractors(world: RandomizedWorld, poses: list, eye: np.ndarray, rng: np.random.Generator) -> list:
    sx, sy = world.config.table_size
    objects = [(p[:3, 3], 0.4 * world.diameters[k]) for k, p in enumerate(poses) if p is not None]
    placements = []
    for k in range(int(rng.integers(0, min(world.randomization.max_distractors, len(world.distractor_shapes)) + 1))):
        shape, size = world.distractor_shapes[k]
        xy = np.array([rng.uniform(-sx / 2 + 0.04, sx / 2 - 0.04), rng.uniform(-sy / 2 + 0.04, sy / 2 - 0.04)])
        position = np.array([xy[0], xy[1], distractor_rest_height(shape, size)])
        clear = all(np.linalg.norm(xy - c[:2]) > radius + float(np.max(size)) for c, radius in objects)
        if clear and np.linalg.norm(position - eye) > 0.15:
            yaw = rng.uniform(0, 2 * math.pi)
            placements.append((position, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])))
    return placements


def randomized_views(world: RandomizedWorld, split: str, count: int) -> list:
    """``count`` randomized views of ``split`` (its own seed stream), as make-scene's ``View`` objects."""
    r = world.randomization
    rng = rng_for(r.seed, "randomized", split)
    views = []
    while len(views) < count:
        poses = random_layout(world, rng)
        if all(p is None for p in poses):
            continue
        for obj, pose in zip(world.objects, poses):  # the camera's collision check sees this frame's layout
            obj.world_T_obj = pose if pose is not None else _hidden_pose(obj)
        world_T_cam = _camera(world, poses, rng)
        if world_T_cam is None:
            continue
        lighting, extra, key_shadow = _lights(rng) if r.lights else (Lighting(), (), True)
        state = FrameState(**dataclasses.asdict(lighting), object_poses=tuple(poses),
                           materials=_surfaces(world, rng) if r.surfaces else (),
                           extra_lights=extra, key_castshadow=key_shadow)
        views.append(View(world_T_cam, state, _distractors(world, poses, world_T_cam[:3, 3], rng)))
    for obj, pose in zip(world.objects, world.scene_poses):
        obj.world_T_obj = pose.copy()
    return views


def make_posecnn_data(scene_config, randomization: RandomizationConfig, out_dir, progress: bool = True) -> dict:
    """Render the randomized ``posecnn_train`` / ``posecnn_test`` splits of ``scene_config``'s objects."""
    scene_config = dataclasses.replace(scene_config, posecnn_scale=randomization.scale,
                                       max_distractors=max(scene_config.max_distractors, randomization.max_distractors))
    out_dir = Path(out_dir)
    start = time.perf_counter()
    size = cameras.split_intrinsics(scene_config, "posecnn_train")
    world = RandomizedWorld(scene_config, randomization, max_size=(size.width, size.height))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scene.yaml").write_text("# resolved config written by inerf-ros make-posecnn-data\n"
                                        + config_to_yaml(scene_config))
    (out_dir / "randomization.json").write_text(json.dumps(dataclasses.asdict(randomization), indent=1))
    write_models(world, out_dir)
    timings = {"build": time.perf_counter() - start}
    with SceneRenderer(world) as renderer:
        for split, count in (("posecnn_train", randomization.train_views), ("posecnn_test", randomization.test_views)):
            if count == 0:
                continue
            t0 = time.perf_counter()
            views = randomized_views(world, split, count)
            render_split(world, renderer, split, views, out_dir, progress)
            timings[split] = time.perf_counter() - t0
    for obj, pose in zip(world.objects, world.scene_poses):
        obj.world_T_obj = pose.copy()
    timings["total"] = time.perf_counter() - start
    return timings


def scene_config_for(config_path=None, mesh_dir=None, meshes=None, echo=print):
    """The scene config to render: ``config_path`` (default tabletop.yaml), its objects replaced by the
    meshes of the folder ``meshes`` when given (``inerf_ros.scene.mesh_folder``: ycb_sim, BOP, OBJ/PLY).
    """
    overrides = {"mesh_dir": mesh_dir} if mesh_dir else {}
    if meshes:
        base = load_scene_config(config_path, overrides)
        folder = read_mesh_folder(meshes)
        echo(folder.describe())
        overrides.update(objects=folder.objects(tuple(base.table_size)), mesh_dir="")
    return load_scene_config(config_path, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``inerf-ros make-posecnn-data``: the scene, the meshes, the randomization."""
    parser.add_argument("--config", default=None, help="scene YAML whose objects are rendered "
                        "(default: config/scenes/tabletop.yaml)")
    parser.add_argument("--meshes", default=None, help="render the meshes of this folder instead of the scene's "
                        "objects (ycb_sim layout, a BOP models/ folder, or OBJ/PLY files)")
    parser.add_argument("--mesh-dir", default=None, help="folder the scene's mesh / texture paths are read from")
    parser.add_argument("--out", required=True, help="output directory (a scene directory: classes.json, "
                        "models/, posecnn_train/, posecnn_test/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    config_tools.add_arguments(parser, RandomizationConfig)


def run(args: argparse.Namespace) -> int:
    """``inerf-ros make-posecnn-data``: render, then one summary line (or one error line)."""
    try:
        randomization = config_tools.from_args(RandomizationConfig, args)
        config_tools.validate(randomization)
        scene_config = scene_config_for(args.config, args.mesh_dir, args.meshes)
        timings = make_posecnn_data(scene_config, randomization, args.out, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        print(f"make-posecnn-data: error: {err}", file=sys.stderr)
        return 2
    print(f"make-posecnn-data: wrote {args.out} (" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ")")
    return 0
