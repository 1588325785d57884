"""The tabletop world as a MuJoCo model, and a headless renderer with depth, masks and visibility.

World frame: z up, the table top is the plane z = 0, the table centre is the origin, metres.
MuJoCo draws through Mesa on the CPU (``MUJOCO_GL=osmesa``, or ``egl`` when OSMesa is missing; see
``README.md``). Camera intrinsics are applied exactly by setting the OpenGL frustum (square pixels).
"""
from __future__ import annotations

import ctypes.util
import dataclasses
import io
import os
import zlib

import cv2
import numpy as np
from PIL import Image


def _choose_gl_backend() -> None:
    """Pick a headless OpenGL back end before MuJoCo is imported, unless the user chose one."""
    if "MUJOCO_GL" in os.environ:
        return
    os.environ["MUJOCO_GL"] = "osmesa" if ctypes.util.find_library("OSMesa") else "egl"
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


_choose_gl_backend()
import mujoco  # noqa: E402  (after choosing the GL back end)

from inerf_ros.camera import Intrinsics  # noqa: E402
from inerf_ros.scene import objects as obj_lib  # noqa: E402
from inerf_ros.scene import textures  # noqa: E402
from inerf_ros.scene.config import SceneConfig  # noqa: E402

OPTICAL_T_OPENGL_R = np.diag([1.0, -1.0, -1.0])
FLOOR_HALF_SIZE = 6.0
HIDDEN_Z = -50.0           # where unused distractors wait (below the floor, out of every view)
TABLE_THICKNESS = 0.03
LEG_WIDTH = 0.05
DISTRACTOR_SHAPES = ("box", "sphere", "cylinder", "capsule", "ellipsoid")
WALL_THICKNESS = 0.05


def rng_for(seed: int, *names) -> np.random.Generator:
    """An independent, reproducible random stream per (seed, name...) (crc32 of names, not ``hash``)."""
    keys = [seed] + [zlib.crc32(str(n).encode()) for n in names]
    return np.random.default_rng(np.random.SeedSequence(keys))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def _fmt(values) -> str:
    return " ".join(repr(float(v)) for v in np.ravel(values))


def _quat_wxyz(rotation: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, dtype=np.float64).ravel())
    return quat


@dataclasses.dataclass
class SceneObject:
    """One object of the built world."""

    instance_id: int        # 1-based, value in the instance mask
    class_id: int           # 1-based, value in the class label mask
    name: str
    model: obj_lib.Model
    world_T_obj: np.ndarray  # (4, 4)


@dataclasses.dataclass
class Lighting:
    """Key (spot, casts shadows) and fill (directional) lights, plus the ambient of the head light."""

    key_pos: tuple = (0.9, -0.7, 1.6)
    key_diffuse: tuple = (0.75, 0.72, 0.68)
    fill_dir: tuple = (-0.4, 0.6, -1.0)
    fill_diffuse: tuple = (0.3, 0.3, 0.33)
    ambient: tuple = (0.25, 0.25, 0.25)


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A random key light 1.2-2.5 m away, 25-85 deg above the table, with a slightly tinted colour."""
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(25), np.radians(85))
    distance = rng.uniform(1.2, 2.5)
    key_pos = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                   np.sin(elevation)])
    tint = rng.uniform(0.85, 1.0, size=3)
    fill_dir = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -1.0])
    return Lighting(tuple(key_pos), tuple(rng.uniform(0.35, 0.95) * tint), tuple(fill_dir),
                    tuple(rng.uniform(0.05, 0.4) * np.ones(3)), tuple(rng.uniform(0.1, 0.4) * np.ones(3)))


class World:
    """Table, floor, objects and distractor slots compiled into one MuJoCo model."""

    def __init__(self, config: SceneConfig, max_size: tuple[int, int] | None = None):
        self.config = config
        specs = config.object_specs()
        self.objects: list[SceneObject] = []
        for k, spec in enumerate(specs):
            model = self._object_model(spec)
            rotation = obj_lib.rpy_matrix(spec.rpy_deg)
            world_T_obj = np.eye(4)
            world_T_obj[:3, :3] = rotation
            if len(spec.position) == 3:
                world_T_obj[:3, 3] = spec.position
            else:  # resting on the table top: lowest rotated vertex at z = 0
                z = -float((model.vertices @ rotation.T)[:, 2].min())
                world_T_obj[:3, 3] = [spec.position[0], spec.position[1], z]
            self.objects.append(SceneObject(k + 1, k + 1, spec.name, model, world_T_obj))
        width, height = max_size or (config.width, config.height)
        xml, assets = self._mjcf(width, height)
        try:
            self.model = mujoco.MjModel.from_xml_string(xml, assets)
        except ValueError as err:
            raise ValueError(f"MuJoCo could not build the scene: {err}") from None
        self.data = mujoco.MjData(self.model)
        mujoco.mj_forward(self.model, self.data)
        # geom id -> instance id (0 = not an object): the instance mask lookup table.
        self.geom_instance = np.zeros(self.model.ngeom + 1, np.uint8)  # last entry: background (-1)
        for obj in self.objects:
            geom = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f"obj_{obj.instance_id}")
            self.geom_instance[geom] = obj.instance_id
        class_of_instance = np.zeros(256, np.uint8)
        for obj in self.objects:
            class_of_instance[obj.instance_id] = obj.class_id
        self.class_of_instance = class_of_instance
        self.object_geoms = {
            obj.instance_id: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f"obj_{obj.instance_id}")
            for obj in self.objects}
        distractor_geoms = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, f"distractor_{k}")
                            for k in range(config.max_distractors)]
        # Geoms that can hide an object from a camera above the table: objects and distractors.
        self.occluder_geoms = np.array(list(self.object_geoms.values()) + distractor_geoms, dtype=np.int64)
        self.distractor_bodies = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"distractor_{k}")
                                  for k in range(config.max_distractors)]
        self.camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "camera")

    # -- building -------------------------------------------------------------------------------
    def _object_model(self, spec) -> obj_lib.Model:
        rng = rng_for(self.config.seed, "object", spec.name)
        color = spec.color or None
        if spec.type == "mesh":
            base = self.config.mesh_dir
            mesh_path = spec.mesh if os.path.isabs(spec.mesh) or not base else os.path.join(base, spec.mesh)
            texture = spec.texture
            if texture and not os.path.isabs(texture) and base:
                texture = os.path.join(base, texture)
            if not base and not os.path.isabs(spec.mesh) and not os.path.exists(spec.mesh):
                raise FileNotFoundError(f"object {spec.name!r}: mesh {spec.mesh!r} not found; "
                                        "give the folder holding it with --mesh-dir")
            model = obj_lib.load_mesh_model(mesh_path, texture, spec.scale, spec.symmetry or "none",
                                            self.config.max_texture_size, color)
            if spec.recentre:
                lo, hi = model.bbox
                model.params["recentre_offset"] = [float(v) for v in -(lo + hi) / 2]
                model.vertices = model.vertices - (lo + hi) / 2
        else:
            model = obj_lib.make_procedural(spec.type, list(spec.size), spec.text or spec.name.replace("_", " "),
                                            color, rng, min(1024, self.config.max_texture_size))
            if spec.symmetry:
                model.symmetry = spec.symmetry
        return model

    def table_boxes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(centre, half size) of the table top and its legs, world frame."""
        sx, sy = self.config.table_size
        h = self.config.table_height
        boxes = [(np.array([0.0, 0.0, -TABLE_THICKNESS / 2]), np.array([sx / 2, sy / 2, TABLE_THICKNESS / 2]))]
        leg_h = h - TABLE_THICKNESS
        for ix in (-1, 1):
            for iy in (-1, 1):
                centre = np.array([ix * (sx / 2 - LEG_WIDTH), iy * (sy / 2 - LEG_WIDTH), -TABLE_THICKNESS - leg_h / 2])
                boxes.append((centre, np.array([LEG_WIDTH / 2, LEG_WIDTH / 2, leg_h / 2])))
        return boxes

    def _mjcf(self, width: int, height: int) -> tuple[str, dict]:
        cfg = self.config
        rng = rng_for(cfg.seed, "world")
        assets = {"floor.png": _png(textures.tiles(rng, 512)), "wood.png": _png(textures.wood(rng, 512))}
        wood_atlas = np.tile(textures.wood(rng, 256), (2, 3, 1))
        assets["wood_atlas.png"] = _png(wood_atlas)
        lines = [
            '<mujoco model="inerf_tabletop">',
            '  <compiler angle="radian"/>',
            '  <statistic extent="2" center="0 0 0"/>',
            '  <visual>',
            f'    <global offwidth="{width}" offheight="{height}"/>',
            '    <quality shadowsize="2048" offsamples="0"/>',
            '    <map znear="0.005" zfar="10"/>',
            '    <headlight ambient="0.25 0.25 0.25" diffuse="0 0 0" specular="0 0 0"/>',
            '  </visual>',
            '  <asset>',
            '    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.8 0.85" rgb2="0.3 0.3 0.35"'
            ' width="256" height="256"/>',
            '    <texture name="floor" type="2d" file="floor.png"/>',
            '    <material name="floor" texture="floor" texrepeat="3 3" texuniform="true" specular="0.1"/>',
            '    <texture name="wood" type="2d" file="wood_atlas.png"/>',
            '    <material name="wood" texture="wood" specular="0.25" shininess="0.3"/>',
        ]
        body_lines = []
        for k, (centre, half) in enumerate(self.table_boxes()):
            vertices, faces, uv = obj_lib.box_mesh(*(2 * half))
            assets[f"table_{k}.msh"] = obj_lib.write_msh(vertices, faces, uv)
            lines.append(f'    <mesh name="table_{k}" file="table_{k}.msh" inertia="shell"/>')
            body_lines.append(f'    <geom name="table_{k}" type="mesh" mesh="table_{k}" material="wood"'
                              f' pos="{_fmt(centre)}" contype="0" conaffinity="0"/>')
        for obj in self.objects:
            k = obj.instance_id
            model = obj.model
            assets[f"obj_{k}.msh"] = obj_lib.write_msh(model.vertices, model.faces, model.uv)
            assets[f"obj_{k}.png"] = _png(model.texture)
            shiny = model.params.get("type") in ("can", "mug", "bottle")
            lines += [f'    <mesh name="obj_{k}" file="obj_{k}.msh" inertia="shell"/>',
                      f'    <texture name="obj_{k}" type="2d" file="obj_{k}.png"/>',
                      f'    <material name="obj_{k}" texture="obj_{k}" specular="{0.5 if shiny else 0.15}"'
                      f' shininess="{0.6 if shiny else 0.2}"/>']
            body_lines += [f'    <body name="obj_{k}" pos="{_fmt(obj.world_T_obj[:3, 3])}"'
                           f' quat="{_fmt(_quat_wxyz(obj.world_T_obj[:3, :3]))}">',
                           f'      <geom name="obj_{k}" type="mesh" mesh="obj_{k}" material="obj_{k}"'
                           ' contype="0" conaffinity="0"/>',
                           '    </body>']
        drng = rng_for(cfg.seed, "distractor-models")
        self.distractor_shapes = []
        for k in range(cfg.max_distractors):
            assets[f"distractor_{k}.png"] = _png(textures.distractor_texture(drng))
            shape = DISTRACTOR_SHAPES[int(drng.integers(len(DISTRACTOR_SHAPES)))]
            size = drng.uniform(0.02, 0.06, size=3)
            self.distractor_shapes.append((shape, size))
            lines += [f'    <texture name="distractor_{k}" type="2d" file="distractor_{k}.png"/>',
                      f'    <material name="distractor_{k}" texture="distractor_{k}" specular="0.3"/>']
            body_lines += [f'    <body name="distractor_{k}" pos="0 0 {HIDDEN_Z}">',
                           f'      <geom name="distractor_{k}" type="{shape}" size="{_fmt(size)}"'
                           f' material="distractor_{k}" contype="0" conaffinity="0"/>',
                           '    </body>']
        if cfg.room_size:
            room_assets, room_lines, room_geoms = self._room()
            assets.update(room_assets)
            lines += room_lines
            body_lines += room_geoms
        lighting = Lighting()
        lines += ['  </asset>', '  <worldbody>',
                  f'    <geom name="floor" type="plane" size="{FLOOR_HALF_SIZE} {FLOOR_HALF_SIZE} 0.1"'
                  f' pos="0 0 {-cfg.table_height!r}" material="floor" contype="0" conaffinity="0"/>',
                  f'    <light name="key" mode="targetbody" target="world" pos="{_fmt(lighting.key_pos)}"'
                  f' diffuse="{_fmt(lighting.key_diffuse)}" specular="0.3 0.3 0.3" cutoff="70" castshadow="true"/>',
                  f'    <light name="fill" directional="true" dir="{_fmt(lighting.fill_dir)}"'
                  f' diffuse="{_fmt(lighting.fill_diffuse)}" specular="0.1 0.1 0.1" castshadow="false"/>',
                  '    <camera name="camera" pos="0 0 2"/>']
        lines += body_lines + ['  </worldbody>', '</mujoco>']
        return "\n".join(lines), assets

    def wall_boxes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(centre, half size) of the room's four walls, world frame; empty without ``room_size``."""
        if not self.config.room_size:
            return []
        sx, sy, height = (float(v) for v in self.config.room_size)
        z = -self.config.table_height + height / 2
        t = WALL_THICKNESS / 2
        return [(np.array([0.0, sy / 2 + t, z]), np.array([sx / 2 + 2 * t, t, height / 2])),
                (np.array([0.0, -sy / 2 - t, z]), np.array([sx / 2 + 2 * t, t, height / 2])),
                (np.array([sx / 2 + t, 0.0, z]), np.array([t, sy / 2, height / 2])),
                (np.array([-sx / 2 - t, 0.0, z]), np.array([t, sy / 2, height / 2]))]

    def _room(self) -> tuple[dict, list[str], list[str]]:
        """Assets, asset lines and geom lines of the walls: cluttered, photo-like backdrops (posters,
        packages, strokes) so that a forward-facing capture sees texture behind the table. Its own
        random stream: the world without a room is unchanged.
        """
        rng = rng_for(self.config.seed, "room")
        assets, lines, geoms = {}, [], []
        for k, (centre, half) in enumerate(self.wall_boxes()):
            # Every face of the box shows the same backdrop (the box mesh maps faces to a 3x2 atlas).
            assets[f"wall_{k}.png"] = _png(np.tile(textures.clutter(rng, 384, 512), (2, 3, 1)))
            vertices, faces, uv = obj_lib.box_mesh(*(2 * half))
            assets[f"wall_{k}.msh"] = obj_lib.write_msh(vertices, faces, uv)
            lines += [f'    <mesh name="wall_{k}" file="wall_{k}.msh" inertia="shell"/>',
                      f'    <texture name="wall_{k}" type="2d" file="wall_{k}.png"/>',
                      f'    <material name="wall_{k}" texture="wall_{k}" specular="0.05" shininess="0.1"/>']
            geoms.append(f'    <geom name="wall_{k}" type="mesh" mesh="wall_{k}" material="wall_{k}"'
                         f' pos="{_fmt(centre)}" contype="0" conaffinity="0"/>')
        return assets, lines, geoms

    # -- per-frame state ------------------------------------------------------------------------
    def set_lighting(self, lighting: Lighting) -> None:
        """Set the key and fill lights and the ambient light of the next render."""
        m = self.model
        key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_LIGHT, "key")
        fill = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_LIGHT, "fill")
        m.light_pos[key] = lighting.key_pos
        m.light_diffuse[key] = lighting.key_diffuse
        direction = np.asarray(lighting.fill_dir, float)
        m.light_dir[fill] = direction / np.linalg.norm(direction)
        m.light_diffuse[fill] = lighting.fill_diffuse
        m.vis.headlight.ambient[:] = lighting.ambient

    def set_distractors(self, placements: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Place the first len(placements) distractors at (position, wxyz quaternion); hide the rest."""
        if len(placements) > len(self.distractor_bodies):
            raise ValueError(f"{len(placements)} distractors requested, max_distractors is "
                             f"{len(self.distractor_bodies)}")
        for k, body in enumerate(self.distractor_bodies):
            if k < len(placements):
                self.model.body_pos[body] = placements[k][0]
                self.model.body_quat[body] = placements[k][1]
            else:
                self.model.body_pos[body] = [0.0, 0.0, HIDDEN_Z]
                self.model.body_quat[body] = [1.0, 0.0, 0.0, 0.0]

    def forward(self) -> None:
        """Recompute the world poses of every body after changing them (before rendering)."""
        mujoco.mj_forward(self.model, self.data)

    def camera_collision(self, world_T_cam: np.ndarray, margin: float = 0.01) -> str | None:
        """Name of what the camera centre is inside (object box, table, floor), or None."""
        p = np.asarray(world_T_cam, float)[:3, 3]
        for obj in self.objects:
            p_obj = np.linalg.inv(obj.world_T_obj) @ np.append(p, 1.0)
            if obj_lib.bbox_contains(obj.model, p_obj[:3], margin):
                return f"object {obj.name!r}"
        for k, (centre, half) in enumerate(self.table_boxes()):
            if np.all(np.abs(p - centre) <= half + margin):
                return "the table" if k == 0 else "a table leg"
        if p[2] <= -self.config.table_height + margin:
            return "the floor"
        if self.config.room_size and (abs(p[0]) >= self.config.room_size[0] / 2 - margin or
                                      abs(p[1]) >= self.config.room_size[1] / 2 - margin):
            return "a wall (outside the room)"
        return None


@dataclasses.dataclass
class RenderOutput:
    """One rendered view: colour, depth and the class and instance masks."""

    rgb: np.ndarray        # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres along the optical axis, 0 = nothing
    label: np.ndarray      # (H, W) uint8 class ids
    instance: np.ndarray   # (H, W) uint8 instance ids
    px_all: dict           # instance id -> pixels of its unoccluded silhouette in the image


class SceneRenderer:
    """Off-screen renderer of a :class:`World`; one GL context per image size. Close it (or use ``with``)."""

    def __init__(self, world: World, always_silhouettes: bool = False):
        self.world = world
        self.always_silhouettes = always_silhouettes  # draw every object alone, even when nothing touches it
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Free every GL context; the renderer can be used again (contexts are made anew)."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def _renderer(self, intrinsics: Intrinsics) -> mujoco.Renderer:
        key = (intrinsics.width, intrinsics.height)
        if key not in self._renderers:
            m = self.world.model
            if intrinsics.width > m.vis.global_.offwidth or intrinsics.height > m.vis.global_.offheight:
                raise ValueError(f"image {key} larger than the world's off-screen buffer "
                                 f"({m.vis.global_.offwidth}x{m.vis.global_.offheight})")
            self._renderers[key] = mujoco.Renderer(m, intrinsics.height, intrinsics.width)
        return self._renderers[key]

    def _update(self, renderer: mujoco.Renderer, world_T_cam: np.ndarray, intrinsics: Intrinsics) -> None:
        data = self.world.data
        cam = self.world.camera_id
        data.cam_xpos[cam] = world_T_cam[:3, 3]
        data.cam_xmat[cam] = (world_T_cam[:3, :3] @ OPTICAL_T_OPENGL_R).ravel()
        renderer.update_scene(data, camera=cam)
        # The frustum from fx, fy, cx, cy (OpenCV pixel centres); the rasteriser uses square pixels,
        # so the horizontal extent follows from the vertical one: fx is rendered as fy.
        f = intrinsics.fy
        for gl_camera in renderer.scene.camera:
            near = gl_camera.frustum_near
            gl_camera.frustum_bottom = near * (intrinsics.cy + 0.5 - intrinsics.height) / f
            gl_camera.frustum_top = near * (intrinsics.cy + 0.5) / f
            gl_camera.frustum_center = near * (intrinsics.width / 2 - intrinsics.cx - 0.5) / f

    def render(self, world_T_cam: np.ndarray, intrinsics: Intrinsics, visibility: bool = True) -> RenderOutput:
        """Render RGB, depth, masks (and each object's unoccluded silhouette size) from ``world_T_cam`` (optical)."""
        where = self.world.camera_collision(world_T_cam)
        if where is not None:
            raise ValueError(f"camera at {np.round(world_T_cam[:3, 3], 3).tolist()} is inside {where}")
        renderer = self._renderer(intrinsics)
        self._update(renderer, world_T_cam, intrinsics)
        renderer.disable_depth_rendering()
        renderer.disable_segmentation_rendering()
        rgb = renderer.render().copy()
        renderer.enable_depth_rendering()
        depth = renderer.render().astype(np.float32)
        far = self.world.model.vis.map.zfar * self.world.model.stat.extent
        depth[depth >= 0.99 * far] = 0.0
        renderer.disable_depth_rendering()
        renderer.enable_segmentation_rendering()
        seg = renderer.render()
        geom_ids = np.where((seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (seg[..., 0] >= 0), seg[..., 0], -1)
        instance = self.world.geom_instance[geom_ids]  # -1 indexes the last entry: background
        label = self.world.class_of_instance[instance]
        px_all = {}
        if visibility:
            px_all = self._silhouettes(renderer, instance, geom_ids, world_T_cam, intrinsics)
        renderer.disable_segmentation_rendering()
        return RenderOutput(rgb, depth, label, instance, px_all)

    def _needs_silhouette(self, inst: int, instance: np.ndarray, geom_ids: np.ndarray, world_T_cam: np.ndarray,
                          intrinsics: Intrinsics) -> bool:
        """Whether an object may be occluded: visible pixels next to another object or distractor (or
        none visible while its model projects into the image). Otherwise all its pixels are visible.
        """
        mask = instance == inst
        if not mask.any():
            obj = self.world.objects[inst - 1]
            cam_T_obj = np.linalg.inv(world_T_cam) @ obj.world_T_obj
            p = obj.model.vertices @ cam_T_obj[:3, :3].T + cam_T_obj[:3, 3]
            p = p[p[:, 2] > 1e-3]
            if len(p) == 0:
                return False
            u = intrinsics.fx * p[:, 0] / p[:, 2] + intrinsics.cx
            v = intrinsics.fy * p[:, 1] / p[:, 2] + intrinsics.cy
            return bool(u.max() >= -0.5 and u.min() <= intrinsics.width - 0.5
                        and v.max() >= -0.5 and v.min() <= intrinsics.height - 0.5)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
        neighbours = np.unique(geom_ids[ring])
        if world_T_cam[2, 3] <= 0.0:  # below the table top: the table may hide objects
            return bool(np.any(neighbours >= 0))
        own = self.world.object_geoms[inst]
        return bool(np.any(np.isin(neighbours, self.world.occluder_geoms[self.world.occluder_geoms != own])))

    def _silhouettes(self, renderer: mujoco.Renderer, instance: np.ndarray, geom_ids: np.ndarray,
                     world_T_cam: np.ndarray, intrinsics: Intrinsics) -> dict:
        """Pixels of each object drawn alone (others moved out of view), for the visible fraction.

        Drawn only for objects that may be occluded (see ``_needs_silhouette``); for the others the
        silhouette is their visible mask.
        """
        scene = renderer.scene
        geoms = [scene.geoms[j] for j in range(scene.ngeom)]
        saved = [g.pos.copy() for g in geoms]
        out = {}
        for inst, geom_id in self.world.object_geoms.items():
            visible = int(np.count_nonzero(instance == inst))
            may_be_hidden = self._needs_silhouette(inst, instance, geom_ids, world_T_cam, intrinsics)
            if not (self.always_silhouettes or may_be_hidden):
                out[inst] = visible
                continue
            own = [j for j, g in enumerate(geoms) if g.objtype == int(mujoco.mjtObj.mjOBJ_GEOM) and g.objid == geom_id]
            if not own:
                out[inst] = visible
                continue
            for j, g in enumerate(geoms):
                if j not in own:
                    g.pos[2] = saved[j][2] + 1.0e4
            seg = renderer.render()
            drawn = int(np.count_nonzero((seg[..., 0] == geom_id) & (seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM))))
            for j, g in enumerate(geoms):
                g.pos[:] = saved[j]
            # Drawn alone, an object covers at least what is visible of it with occluders.
            out[inst] = max(drawn, visible)
        return out
