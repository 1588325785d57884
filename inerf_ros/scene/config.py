"""Scene configs: one dataclass for the world and its camera sets, one for each object entry."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from inerf_ros import config as cfg
from inerf_ros.config import option
from inerf_ros.scene.objects import OBJECT_TYPES

SPLIT_NAMES = ("nerf", "posecnn_train", "posecnn_test", "arm")
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "scenes" / "tabletop.yaml"


def default_config_path() -> Path:
    """``config/scenes/tabletop.yaml`` of the source tree, else of the installed ROS package's share."""
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    try:
        # lazy: ament_index_python exists only in a ROS install; the source tree runs without it
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("inerf_ros")) / "config" / "scenes" / "tabletop.yaml"
        if installed.is_file():
            return installed
    except (ImportError, LookupError):
        pass
    raise FileNotFoundError(f"the default scene config {DEFAULT_CONFIG} is missing; pass --config")


@dataclasses.dataclass
class ObjectSpec:
    """One object on the table (an entry of ``objects:``)."""

    name: str = option("", "class name (unique in the scene)")
    type: str = option("box", "shape: procedural box/can/mug/bottle, or a mesh file", choices=OBJECT_TYPES)
    size: list = option([], "box: [x, y, z]; can, bottle, mug: [diameter, height]; metres")
    color: list = option([], "main colour, rgb in [0, 1]; empty = from the seed")
    text: str = option("", "name printed on its label; empty = the class name")
    mesh: str = option("", "type mesh: .obj, .ply or .msh file, relative to mesh_dir (or absolute)")
    texture: str = option("", "type mesh: texture image (PNG/JPEG), relative to mesh_dir; empty = from the OBJ/PLY")
    scale: float = option(1.0, "type mesh: factor from file units to metres", range=(1e-6, 1e6))
    recentre: bool = option(False, "type mesh: put the model origin at the centre of its bounding box")
    symmetry: str = option("", "none | continuous_z; empty = from the type (can, bottle: continuous_z)",
                           choices=("", "none", "continuous_z"))
    position: list = option([0.0, 0.0], "[x, y] (resting on the table top) or [x, y, z] of the origin, metres")
    rpy_deg: list = option([0.0, 0.0, 0.0], "orientation: extrinsic roll, pitch, yaw about world x, y, z, degrees")

    def check(self) -> None:
        """Raise ValueError for a missing name, a malformed position or angles, or a mesh without a file."""
        if not self.name:
            raise ValueError("every object needs a name")
        if len(self.position) not in (2, 3):
            raise ValueError(f"position must be [x, y] or [x, y, z], got {self.position}")
        if len(self.rpy_deg) != 3:
            raise ValueError(f"rpy_deg must have 3 angles, got {self.rpy_deg}")
        if self.type == "mesh" and not self.mesh:
            raise ValueError("type mesh needs `mesh: <file>`")


@dataclasses.dataclass
class RobotConfig:
    """The arm that carries the wrist camera of the ``arm`` split (the ``robot:`` section)."""

    model: str = option("ur10e", "UR arm whose published DH table is used", choices=("ur5e", "ur10e"))
    base_xyz: list = option([0.0, -0.47, 0.0], "base_link origin in the world, metres (beside the table)")
    base_rpy_deg: list = option([0.0, 0.0, 90.0], "base_link orientation: roll, pitch, yaw about world x, y, z, deg")
    hand_eye_xyz: list = option([0.0, -0.07, 0.035], "tool0 -> camera_color_optical_frame translation, metres")
    hand_eye_rpy_deg: list = option([0.0, 0.0, 0.0], "tool0 -> camera_color_optical_frame roll, pitch, yaw, deg")
    base_error: list = option([3.0, 2.0], "believed base placement off by: [cm, deg] (exact sizes, random axes)")
    hand_eye_error: list = option([1.0, 1.0], "believed hand-eye transform off by: [cm, deg]")
    encoder_noise_deg: float = option(0.02, "noise on the reported joint angles, 1 sigma, degrees", range=(0.0, 10.0))
    seed: int = option(0, "seed of the believed-model errors and the encoder noise", range=(0, 2 ** 31 - 1))

    def check(self) -> None:
        """Raise ValueError for a pose that is not 3 numbers or an error that is not [cm, deg] >= 0."""
        for name in ("base_xyz", "base_rpy_deg", "hand_eye_xyz", "hand_eye_rpy_deg"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"robot.{name} must have 3 numbers, got {getattr(self, name)}")
        for name in ("base_error", "hand_eye_error"):
            value = getattr(self, name)
            if len(value) != 2 or min(value) < 0:
                raise ValueError(f"robot.{name} must be [cm, deg] >= 0, got {value}")


@dataclasses.dataclass
class SceneConfig:
    """The demo world: table, objects, camera, and how many views of each camera set to render."""

    seed: int = option(0, "seed of every random choice (textures, cameras, lights, distractors)",
                       range=(0, 2 ** 31 - 1))
    width: int = option(640, "image width of the nerf and arm views, pixels", range=(1, 8192))
    height: int = option(480, "image height of the nerf and arm views, pixels", range=(1, 8192))
    fx: float = option(0.0, "focal length x, pixels (0: from fov_x_deg); rendered with fx = fy", range=(0.0, 1e6))
    fy: float = option(0.0, "focal length y, pixels (0: = fx)", range=(0.0, 1e6))
    cx: float = option(-1.0, "principal point x, pixels, (0, 0) = centre of the top-left pixel; -1: image centre")
    cy: float = option(-1.0, "principal point y, pixels; -1: image centre")
    fov_x_deg: float = option(60.0, "horizontal field of view when fx is 0, degrees", range=(1.0, 170.0))
    mesh_dir: str = option("", "folder that relative `mesh`/`texture` paths of the objects are read from")
    max_texture_size: int = option(1024, "textures larger than this (pixels) are downscaled", range=(16, 8192))
    table_size: list = option([1.0, 0.7], "table top size along x and y, metres")
    table_height: float = option(0.74, "table top height above the floor, metres", range=(0.05, 5.0))
    objects: list = option([], "objects on the table (list of ObjectSpec mappings; see config/scenes/tabletop.yaml)")
    splits: list = option(list(SPLIT_NAMES), "camera sets to render (nerf, posecnn_train, posecnn_test, arm)")
    look_at: list = option([0.0, 0.0, 0.05], "point the nerf and arm cameras aim at, world frame, metres")
    nerf_views: int = option(100, "hemisphere views of the nerf set", range=(1, 100000))
    nerf_radius: list = option([0.75, 0.95], "min, max distance of nerf views from look_at, metres")
    nerf_elevation_deg: list = option([15.0, 75.0], "min, max elevation of nerf views above the table, degrees")
    nerf_test_every: int = option(8, "every n-th nerf view goes to transforms_test.json", range=(2, 100000))
    posecnn_train_views: int = option(400, "randomised views of posecnn_train", range=(1, 1000000))
    posecnn_test_views: int = option(60, "randomised views of posecnn_test (held out)", range=(1, 1000000))
    posecnn_scale: float = option(0.5, "image size of the posecnn sets relative to width x height", range=(0.01, 4.0))
    posecnn_radius: list = option([0.35, 1.0], "min, max camera distance of posecnn views, metres")
    posecnn_elevation_deg: list = option([15.0, 80.0], "min, max elevation of posecnn views, degrees")
    max_distractors: int = option(4, "up to this many random distractor shapes per posecnn view", range=(0, 16))
    arm_duration_s: float = option(20.0, "length of the wrist-camera trajectory, seconds", range=(0.1, 3600.0))
    arm_fps: float = option(15.0, "frame rate of the wrist-camera trajectory, Hz", range=(15.0, 30.0))
    arm_radius: list = option([1.1, 0.55], "start and circling horizontal distance from look_at, metres")
    arm_height: list = option([0.75, 0.4], "start and circling camera height above the table top, metres")
    arm_azimuth_deg: list = option([-50.0, 310.0], "start and end azimuth of the circle about look_at, degrees")
    arm_fast_segment: list = option([0.3, 0.55], "fast sweep: start and end, fractions of arm_duration_s")
    arm_fast_share: float = option(0.4, "share of the circle covered in the fast sweep", range=(0.0, 1.0))
    robot: dict = option({}, "the arm carrying the wrist camera (RobotConfig mapping; see tabletop.yaml)")
    room_size: list = option([], "opt-in room around the table: [x, y, height] of its walls, metres, centred on "
                                 "the table (empty: no walls, the open floor and sky)")
    nerf_arc_deg: float = option(0.0, "0: nerf views on the hemisphere; > 0: a forward-facing hand-held arc of this "
                                      "many degrees of azimuth on the -y side of look_at (looking towards +y), with "
                                      "hand jitter", range=(0.0, 360.0))

    def check(self) -> None:
        """Raise ValueError naming the field for any malformed or out-of-range setting (the robot's too)."""
        unknown = set(self.splits) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"splits: unknown {sorted(unknown)}; choose from {list(SPLIT_NAMES)}")
        for name in ("table_size", "nerf_radius", "nerf_elevation_deg", "posecnn_radius",
                     "posecnn_elevation_deg", "arm_radius", "arm_height", "arm_azimuth_deg", "arm_fast_segment"):
            value = getattr(self, name)
            if len(value) != 2 or any(not isinstance(v, (int, float)) for v in value):
                raise ValueError(f"{name} must be two numbers, got {value}")
        if min(self.table_size) <= 0:
            raise ValueError(f"table_size must be positive, got {self.table_size}")
        if len(self.look_at) != 3:
            raise ValueError(f"look_at must be [x, y, z], got {self.look_at}")
        if not self.objects:
            raise ValueError("objects: the scene needs at least one object")
        if len(self.objects) > 254:
            raise ValueError("objects: at most 254 objects (uint8 masks)")
        if self.room_size and (len(self.room_size) != 3 or min(self.room_size) <= 0 or
                               min(self.room_size[:2]) <= max(self.table_size)):
            raise ValueError(f"room_size must be [x, y, height] > 0 metres around the table, got {self.room_size}")
        start, end = self.arm_fast_segment
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"arm_fast_segment must be 0 <= start < end <= 1, got {self.arm_fast_segment}")
        self.robot_config()

    def robot_config(self) -> RobotConfig:
        """The ``robot:`` section as a checked RobotConfig."""
        if not isinstance(self.robot, dict):
            raise ValueError(f"robot: expected a mapping, got {self.robot!r}")
        try:
            return cfg.from_dict(RobotConfig, self.robot)
        except (ValueError, TypeError) as err:
            raise ValueError(f"robot: {err}") from None

    def object_specs(self) -> list[ObjectSpec]:
        """The ``objects:`` entries as checked ObjectSpecs; ValueError names the entry at fault."""
        specs, names = [], set()
        for k, entry in enumerate(self.objects):
            name = entry.get("name") if isinstance(entry, dict) else None
            label = f"objects[{k}]" + (f" ({name})" if name else "")
            if not isinstance(entry, dict):
                raise ValueError(f"{label}: expected a mapping, got {entry!r}")
            try:
                spec = cfg.from_dict(ObjectSpec, entry)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{label}: {err}") from None
            if spec.name in names:
                raise ValueError(f"{label}: duplicate object name {spec.name!r}")
            names.add(spec.name)
            specs.append(spec)
        return specs


# Small and quick: what tests and smoke runs use (--quick); the image shrinks to QUICK_WIDTH pixels wide.
QUICK = {"nerf_views": 6, "nerf_test_every": 3, "posecnn_train_views": 4, "posecnn_test_views": 2,
         "posecnn_scale": 1.0, "arm_duration_s": 0.4, "arm_fps": 15.0, "max_texture_size": 256}
QUICK_WIDTH = 80


def shrink_image(config: SceneConfig, width: int) -> SceneConfig:
    """The same camera at another image width (intrinsics scaled, pixel centres kept)."""
    factor = width / config.width
    height = max(1, round(config.height * factor))
    sx, sy = width / config.width, height / config.height
    changes = {"width": width, "height": height, "fx": config.fx * sx, "fy": config.fy * sy}
    if config.cx >= 0:
        changes["cx"] = (config.cx + 0.5) * sx - 0.5
    if config.cy >= 0:
        changes["cy"] = (config.cy + 0.5) * sy - 0.5
    return dataclasses.replace(config, **changes)


def _coerce_list(value, default):
    """CLI lists arrive as strings: convert them to the type of the default's elements."""
    if not isinstance(value, list) or not default:
        return value
    kind = type(default[0])
    if kind in (int, float):
        return [kind(v) if isinstance(v, str) else v for v in value]
    return value


def load_scene_config(path=None, overrides: dict | None = None) -> SceneConfig:
    """Read a scene YAML (default ``config/scenes/tabletop.yaml``), apply overrides, validate.

    Errors are ``ValueError`` naming the file and the field.
    """
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise FileNotFoundError(f"scene config {path} does not exist")
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    data.update(overrides or {})
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(SceneConfig)}
    data = {k: _coerce_list(v, defaults.get(k)) for k, v in data.items()}
    try:
        config = cfg.from_dict(SceneConfig, data)
        config.object_specs()
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None
    return config


def config_to_yaml(config: SceneConfig) -> str:
    """``config`` as YAML in field order, as :func:`load_scene_config` reads it back."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
