"""Read a rendered scene (``inerf-ros make-scene``): frames with full ground truth, class table, models.

The layout is documented in ``inerf_ros/scene/README.md``. Everything returned is in metres and in
the OpenCV/ROS conventions of the rest of the package: ``world_T_cam_optical`` maps points of the
camera's optical frame (x right, y down, z forward) into the world (= NeRF) frame, ``cam_T_obj`` maps
object-model points into that optical frame, and :class:`~inerf_ros.camera.Intrinsics` puts the centre
of the top-left pixel at (0, 0).

Example::

    from inerf_ros.scene.dataset import load_frames, load_class_table
    classes = load_class_table("demo_world")            # {class_id: ClassInfo}
    for frame in load_frames("demo_world", "posecnn_train"):
        for obj in frame.objects:
            if obj.visible_fraction > 0.1:
                ...  # frame.rgb, frame.label == obj.class_id, obj.cam_T_obj
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from inerf_ros.camera import Intrinsics
from inerf_ros.robot.model import RobotModel

SPLITS = ("nerf", "posecnn_train", "posecnn_test", "arm")
# Depth PNGs hold uint16 values; value * DEPTH_SCALE_MM = millimetres (BOP's ``depth_scale``).
DEPTH_SCALE_MM = 0.1


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    """One object class of the scene (an entry of ``classes.json``)."""

    class_id: int
    name: str
    kind: str                     # box | can | mug | bottle | mesh
    size: tuple[float, float, float]  # extent of the model's axis-aligned box in the object frame, metres
    diameter: float               # largest distance between two model vertices, metres
    symmetry: str                 # none | continuous_z (rotation about the object z axis keeps its shape)
    bbox_min: tuple[float, float, float]  # model's box corners in the object frame, metres
    bbox_max: tuple[float, float, float]
    model_file: str               # PLY mesh (metres, object frame), relative to the scene directory
    params: dict                  # the parametric description (procedural objects) or mesh source


@dataclasses.dataclass(frozen=True)
class ObjectGT:
    """Ground truth of one object in one frame."""

    instance_id: int          # value of this object in the instance mask (1-based)
    class_id: int             # value of this object in the class label mask (1-based)
    class_name: str
    cam_T_obj: np.ndarray     # (4, 4) object -> camera optical frame, metres
    visible_fraction: float   # visible pixels / pixels of the unoccluded silhouette inside the image (0..1)
    px_count_visib: int       # visible pixels
    px_count_all: int         # pixels of the unoccluded silhouette (inside the image)
    bbox_visib: tuple[int, int, int, int]  # x, y, width, height of the visible pixels; (-1,)*4 if none


@dataclasses.dataclass
class Frame:
    """One rendered view with its ground truth."""

    index: int
    rgb: np.ndarray           # (H, W, 3) uint8
    depth: np.ndarray         # (H, W) float32 metres along the optical axis (z); 0 where nothing was hit
    label: np.ndarray         # (H, W) uint8 class ids, 0 = background / table / distractor
    instance: np.ndarray      # (H, W) uint8 instance ids, 0 = background / table / distractor
    intrinsics: Intrinsics
    world_T_cam_optical: np.ndarray  # (4, 4)
    objects: list[ObjectGT]
    time: float | None = None  # seconds from the start of the trajectory (arm split), else None
    rgb_path: str = ""
    joints: np.ndarray | None = None  # (6,) true joint angles of the arm, radians (arm split), else None


@dataclasses.dataclass
class ArmRobot:
    """The arm of the ``arm`` split (``arm/robot.json``): the truth and what the robot believes."""

    truth: RobotModel           # renders the images: world_T_cam_optical = truth.world_T_camera(joints)
    believed: RobotModel        # the robot's calibration: base placement and hand-eye slightly off
    encoder_noise_deg: float    # 1 sigma of the reported joint angles
    seed: int                   # seed of the errors and of the encoder noise


def load_robot(scene_dir, split: str = "arm") -> ArmRobot | None:
    """The arm that moved the camera of ``split``, or None when the split has no ``robot.json``."""
    path = Path(scene_dir) / split / "robot.json"
    if not path.is_file():
        return None
    content = _read_json(path)
    return ArmRobot(RobotModel.from_dict(content["truth"]), RobotModel.from_dict(content["believed"]),
                    float(content["encoder_noise_deg"]), int(content["seed"]))


def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a split written by `inerf-ros make-scene`?")
    with open(path) as handle:
        return json.load(handle)


def _pose(rotation_row_major, translation_mm) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.asarray(rotation_row_major, dtype=np.float64).reshape(3, 3)
    pose[:3, 3] = np.asarray(translation_mm, dtype=np.float64) / 1000.0
    return pose


def load_class_table(scene_dir) -> dict[int, ClassInfo]:
    """``classes.json`` of a scene as ``{class_id: ClassInfo}``."""
    table = _read_json(Path(scene_dir) / "classes.json")
    out = {}
    for entry in table["classes"]:
        out[int(entry["id"])] = ClassInfo(
            class_id=int(entry["id"]), name=entry["name"], kind=entry["kind"],
            size=tuple(entry["size"]), diameter=float(entry["diameter"]), symmetry=entry["symmetry"],
            bbox_min=tuple(entry["bbox_min"]), bbox_max=tuple(entry["bbox_max"]),
            model_file=entry["model_file"], params=entry.get("params", {}))
    return out


def load_model(scene_dir, class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) float64 metres in the object frame and faces (m, 3) int of a class's model."""
    info = load_class_table(scene_dir)[class_id]
    return read_ply(Path(scene_dir) / info.model_file)


def read_ply(path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of a binary little-endian PLY written by :func:`write_ply`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n_vertices = n_faces = 0
    vertex_props: list[str] = []
    current = None
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            current = parts[1]
            if current == "vertex":
                n_vertices = int(parts[2])
            elif current == "face":
                n_faces = int(parts[2])
        elif parts[:1] == ["property"] and current == "vertex":
            vertex_props.append(parts[-1])
    if "binary_little_endian" not in header[1]:
        raise ValueError(f"{path}: only binary little-endian PLY files written by make-scene are supported")
    vertex_dtype = np.dtype([(name, "<f4") for name in vertex_props])
    vertices = np.frombuffer(data, vertex_dtype, n_vertices, end)
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1).astype(np.float64)
    face_dtype = np.dtype([("n", "u1"), ("idx", "<i4", (3,))])
    faces = np.frombuffer(data, face_dtype, n_faces, end + vertex_dtype.itemsize * n_vertices)
    return xyz, faces["idx"].astype(np.int64)


def write_ply(path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None = None) -> None:
    """Binary PLY: float32 x, y, z (+ s, t texture coordinates), triangles as int32 index lists."""
    vertices = np.asarray(vertices, dtype=np.float32)
    names = ["x", "y", "z"] + (["s", "t"] if uv is not None else [])
    header = ["ply", "format binary_little_endian 1.0", "comment inerf_ros make-scene model, metres",
              f"element vertex {len(vertices)}"]
    header += [f"property float {name}" for name in names]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    columns = [vertices] + ([np.asarray(uv, dtype=np.float32)] if uv is not None else [])
    vertex_block = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4").tobytes()
    face_rec = np.zeros(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = faces
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertex_block)
        handle.write(face_rec.tobytes())


def intrinsics_from_transforms(meta: dict, frame: dict | None = None) -> Intrinsics:
    """OpenCV-convention intrinsics from a transforms.json (cx_json = cx + 0.5)."""
    src = dict(meta)
    if frame:
        src.update({k: frame[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h") if k in frame})
    return Intrinsics(int(src["w"]), int(src["h"]), float(src["fl_x"]), float(src["fl_y"]),
                      float(src["cx"]) - 0.5, float(src["cy"]) - 0.5)


def list_splits(scene_dir) -> list[str]:
    """The splits of :data:`SPLITS` that ``scene_dir`` holds."""
    return [s for s in SPLITS if (Path(scene_dir) / s / "scene_gt.json").is_file()]


def load_frames(scene_dir, split: str, *, images: bool = True, indices=None) -> Iterator[Frame]:
    """Iterate over the frames of one split (``nerf``, ``posecnn_train``, ``posecnn_test``, ``arm``).

    ``images=False`` skips reading the PNGs (rgb/depth/label/instance are then empty arrays), for
    pose-only uses. ``indices`` restricts to some frame indices.
    """
    # lazy: cv2 is heavy; readers of poses and class tables must not load it
    import cv2

    split_dir = Path(scene_dir) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"split {split!r} not found in {scene_dir} (have: {list_splits(scene_dir)})")
    classes = load_class_table(scene_dir)
    scene_gt = _read_json(split_dir / "scene_gt.json")
    scene_camera = _read_json(split_dir / "scene_camera.json")
    scene_gt_info = _read_json(split_dir / "scene_gt_info.json")
    keys = sorted(scene_gt, key=int)
    if indices is not None:
        wanted = {int(i) for i in indices}
        keys = [k for k in keys if int(k) in wanted]
    for key in keys:
        cam = scene_camera[key]
        K = np.asarray(cam["cam_K"], dtype=np.float64).reshape(3, 3)
        intrinsics = Intrinsics(int(cam["width"]), int(cam["height"]), K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        cam_T_world = _pose(cam["cam_R_w2c"], cam["cam_t_w2c"])
        objects = []
        for k, (gt, info) in enumerate(zip(scene_gt[key], scene_gt_info[key])):
            class_id = int(gt["obj_id"])
            objects.append(ObjectGT(
                instance_id=int(gt.get("inst_id", k + 1)), class_id=class_id, class_name=classes[class_id].name,
                cam_T_obj=_pose(gt["cam_R_m2c"], gt["cam_t_m2c"]), visible_fraction=float(info["visib_fract"]),
                px_count_visib=int(info["px_count_visib"]), px_count_all=int(info["px_count_all"]),
                bbox_visib=tuple(int(v) for v in info["bbox_visib"])))
        name = f"{int(key):06d}.png"
        if images:
            bgr = cv2.imread(str(split_dir / "rgb" / name), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read {split_dir / 'rgb' / name}")
            rgb = bgr[:, :, ::-1].copy()
            depth_raw = cv2.imread(str(split_dir / "depth" / name), cv2.IMREAD_UNCHANGED)
            depth = depth_raw.astype(np.float32) * np.float32(float(cam["depth_scale"]) / 1000.0)
            label = cv2.imread(str(split_dir / "label" / name), cv2.IMREAD_UNCHANGED)
            instance = cv2.imread(str(split_dir / "instance" / name), cv2.IMREAD_UNCHANGED)
        else:
            rgb = depth = label = instance = np.zeros((0, 0))
        yield Frame(index=int(key), rgb=rgb, depth=depth, label=label, instance=instance, intrinsics=intrinsics,
                    world_T_cam_optical=np.linalg.inv(cam_T_world), objects=objects, time=cam.get("time"),
                    rgb_path=str(split_dir / "rgb" / name),
                    joints=np.asarray(cam["joints"], dtype=np.float64) if "joints" in cam else None)
