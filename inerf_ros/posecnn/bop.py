"""BOP datasets (https://bop.felk.cvut.cz, ``bop_toolkit`` docs/bop_datasets_format.md): write and read.

A BOP dataset is a folder with ``models/`` (``obj_{id:06d}.ply`` in millimetres + ``models_info.json``)
and split folders (``train_pbr``, ``test``, ...) of scene folders ``{scene:06d}/`` holding ``rgb/``,
``depth/``, ``mask_visib/{im:06d}_{gt:06d}.png`` and ``scene_camera.json``, ``scene_gt.json``,
``scene_gt_info.json`` (poses in millimetres). A scene written by ``make-scene`` / ``make-posecnn-data``
already has the json files and the images; :func:`export_split` adds what BOP tools expect (per-object
visible masks, millimetre models). :func:`read_bop` reads such a folder (e.g. BlenderProc's
``train_pbr``) as PoseCNN training frames: ``train-posecnn --bop DIR``.

Example::

    inerf-ros export-bop --scene data_cache/posecnn_ycb --out /tmp/ycb_bop      # writes train_pbr/000000/
    inerf-ros train-posecnn --bop /tmp/ycb_bop --out /tmp/model
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from inerf_ros.scene.dataset import load_class_table, load_frames, read_ply, write_ply

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif")
SPLIT_PREFERENCE = ("train_pbr", "train_synt", "train_real", "train", "test", "val")
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclasses.dataclass
class BopClass:
    """One object model of a BOP dataset, in metres."""

    obj_id: int
    name: str
    symmetry: str          # none | continuous_z (the symmetries this package scores)
    diameter: float        # metres
    vertices: np.ndarray   # (n, 3) metres, object frame
    faces: np.ndarray      # (m, 3) int


# -- PLY ------------------------------------------------------------------------------------------

def read_ply_mesh(path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) float64 and triangles (m, 3) int64 of an ASCII or binary little-endian PLY with any
    vertex properties (normals, colours, texture coordinates) and triangle faces (extra face lists allowed
    when every face has the same counts, as in BOP's textured models).
    """
    data = Path(path).read_bytes()
    marker = data.find(b"end_header")
    if not data.startswith(b"ply") or marker < 0:
        raise ValueError(f"{path}: not a PLY file")
    end = data.index(b"\n", marker) + 1
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt = header[1].split()[1] if len(header) > 1 and header[1].startswith("format") else ""
    elements: list[tuple[str, int, list]] = []
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"] and elements:
            elements[-1][2].append(parts[1:])
    if fmt == "ascii":
        return _ply_ascii(path, data[end:], elements)
    if fmt != "binary_little_endian":
        raise ValueError(f"{path}: PLY format {fmt!r} is not supported (ascii or binary_little_endian)")
    offset, vertices, faces = end, None, None
    for name, count, props in elements:
        dtype, counts = _ply_dtype(path, props, data, offset)
        block = np.frombuffer(data, dtype, count, offset)
        offset += dtype.itemsize * count
        for field, expected in counts.items():
            if count and np.any(block[field] != expected):
                raise ValueError(f"{path}: faces of varying vertex counts (only triangles are supported)")
        if name == "vertex":
            vertices = np.stack([block["x"], block["y"], block["z"]], axis=1).astype(np.float64)
        elif name == "face":
            key = "vertex_indices" if "vertex_indices" in block.dtype.names else "vertex_index"
            faces = block[key].astype(np.int64)
    return _checked_mesh(path, vertices, faces)


def _ply_dtype(path, props, data: bytes, offset: int) -> tuple[np.dtype, dict]:
    """The numpy record of one element; list properties get the count found in the first record."""
    fields, counts, position = [], {}, offset
    for prop in props:
        if prop[0] == "list":
            count_type, item_type, name = _PLY_TYPES[prop[1]], _PLY_TYPES[prop[2]], prop[3]
            n = int(np.frombuffer(data, "<" + count_type, 1, position)[0]) if position < len(data) else 3
            fields += [(f"{name}_count", "<" + count_type), (name, "<" + item_type, (n,))]
            counts[f"{name}_count"] = n
            position += np.dtype(count_type).itemsize + n * np.dtype(item_type).itemsize
        else:
            if prop[0] not in _PLY_TYPES:
                raise ValueError(f"{path}: unknown PLY property type {prop[0]!r}")
            fields.append((prop[1], "<" + _PLY_TYPES[prop[0]]))
            position += np.dtype(_PLY_TYPES[prop[0]]).itemsize
    return np.dtype(fields), counts


def _ply_ascii(path, body: bytes, elements) -> tuple[np.ndarray, np.ndarray]:
    lines = body.decode("ascii", "replace").splitlines()
    row, vertices, faces = 0, None, None
    for name, count, props in elements:
        chunk = lines[row:row + count]
        row += count
        if name == "vertex":
            names = [p[-1] for p in props]
            values = np.array([[float(v) for v in line.split()[:len(names)]] for line in chunk]).reshape(-1, len(names))
            vertices = values[:, [names.index("x"), names.index("y"), names.index("z")]]
        elif name == "face":
            split = [line.split() for line in chunk]
            if any(int(parts[0]) != 3 for parts in split):
                raise ValueError(f"{path}: only triangle faces are supported")
            faces = np.array([[int(v) for v in parts[1:4]] for parts in split], dtype=np.int64).reshape(-1, 3)
    return _checked_mesh(path, vertices, faces)


def _checked_mesh(path, vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    if vertices is None or faces is None or len(vertices) == 0 or len(faces) == 0:
        raise ValueError(f"{path}: the PLY has no vertices or no faces")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{path}: vertices contain NaN or infinity")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"{path}: a face indexes a vertex that does not exist")
    return vertices, faces


# -- writing --------------------------------------------------------------------------------------

def export_split(scene_dir, split: str, out_dir, bop_split: str = "train_pbr", scene_id: int = 0) -> Path:
    """Write ``split`` of a rendered scene as BOP scene ``scene_id`` of ``out_dir/bop_split``, with the
    scene's models in millimetres; returns the scene folder. Refuses to overwrite an existing one.
    """
    scene_dir, out_dir = Path(scene_dir), Path(out_dir)
    target = out_dir / bop_split / f"{scene_id:06d}"
    if target.exists():
        raise FileExistsError(f"{target} exists: remove it or choose another --out / --scene-id")
    source = scene_dir / split
    for name in ("scene_gt.json", "scene_camera.json", "scene_gt_info.json"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name} is missing: is {scene_dir} a scene with a {split} split?")
    models = out_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    info = {}
    for class_id, entry in load_class_table(scene_dir).items():
        vertices, faces = read_ply(scene_dir / entry.model_file)
        write_ply(models / f"obj_{class_id:06d}.ply", vertices * 1000.0, faces)
        lo, hi = np.array(entry.bbox_min) * 1000.0, np.array(entry.bbox_max) * 1000.0
        info[str(class_id)] = {"diameter": 1000.0 * entry.diameter, "min_x": lo[0], "min_y": lo[1], "min_z": lo[2],
                               "size_x": hi[0] - lo[0], "size_y": hi[1] - lo[1], "size_z": hi[2] - lo[2]}
        if entry.symmetry == "continuous_z":
            info[str(class_id)]["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
    (models / "models_info.json").write_text(json.dumps(info, indent=1))
    (out_dir / "classes.json").write_text(json.dumps({str(k): v.name for k, v in load_class_table(scene_dir).items()},
                                                     indent=1))
    for sub in ("rgb", "depth", "mask_visib"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for name in ("scene_gt.json", "scene_camera.json", "scene_gt_info.json"):
        shutil.copyfile(source / name, target / name)
    for frame in load_frames(scene_dir, split):
        name = f"{frame.index:06d}.png"
        shutil.copyfile(source / "rgb" / name, target / "rgb" / name)
        shutil.copyfile(source / "depth" / name, target / "depth" / name)
        for k, obj in enumerate(frame.objects):
            mask = (frame.instance == obj.instance_id).astype(np.uint8) * 255
            cv2.imwrite(str(target / "mask_visib" / f"{frame.index:06d}_{k:06d}.png"), mask)
    return target


# -- reading --------------------------------------------------------------------------------------

def read_classes(bop_dir) -> list[BopClass]:
    """The models of ``bop_dir/models`` (millimetres -> metres), in ``obj_id`` order."""
    models = Path(bop_dir) / "models"
    info_path = models / "models_info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: a BOP dataset has models/models_info.json "
                                "(diameters and symmetries, millimetres)")
    info = json.loads(info_path.read_text())
    names_path = Path(bop_dir) / "classes.json"
    names = json.loads(names_path.read_text()) if names_path.is_file() else {}
    classes = []
    for key in sorted(info, key=int):
        entry, obj_id = info[key], int(key)
        ply = models / f"obj_{obj_id:06d}.ply"
        if not ply.is_file():
            raise FileNotFoundError(f"{ply} is missing (listed in {info_path})")
        vertices, faces = read_ply_mesh(ply)
        vertices = vertices / 1000.0
        diameter = float(entry.get("diameter", 0.0)) / 1000.0
        extent = float(np.linalg.norm(np.ptp(vertices, axis=0)))
        if not 0.001 < extent < 5.0:
            raise ValueError(f"{ply}: the model is {extent:.4g} m across read as millimetres; BOP models are in "
                             "millimetres (a model in metres would be 1000x too small)")
        if diameter <= 0:
            diameter = extent
        classes.append(BopClass(obj_id, str(names.get(key, f"obj_{obj_id:06d}")), _symmetry(entry),
                                diameter, vertices, faces))
    if not classes:
        raise ValueError(f"{info_path}: no models listed")
    return classes


def _symmetry(entry: dict) -> str:
    """``continuous_z`` for a continuous symmetry about the model's z axis; anything else counts as none
    (discrete symmetries are not scored as symmetric by this package).
    """
    for sym in entry.get("symmetries_continuous", []):
        axis = np.asarray(sym.get("axis", [0, 0, 0]), float)
        if np.linalg.norm(axis) > 0 and abs(axis[2]) / np.linalg.norm(axis) > 0.999:
            return "continuous_z"
    return "none"


def find_split(bop_dir, split: str = "") -> Path:
    """``bop_dir/split``, or the first of :data:`SPLIT_PREFERENCE` present; ``bop_dir`` itself when it
    is a scene folder's parent already (holds ``000000/scene_gt.json``).
    """
    root = Path(bop_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"BOP folder {bop_dir} does not exist")
    if split:
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{root / split} does not exist")
        return root / split
    for name in SPLIT_PREFERENCE:
        if (root / name).is_dir():
            return root / name
    if any(p.is_dir() and (p / "scene_gt.json").is_file() for p in root.iterdir()):
        return root
    raise FileNotFoundError(f"{bop_dir}: no BOP split folder ({', '.join(SPLIT_PREFERENCE)}) with scene folders")


def iter_frames(split_dir, classes: list[BopClass], max_frames: int = 0):
    """Frames ``(rgb, label, instance, K, [(instance_id, class_id, cam_T_obj)])`` of every scene folder of
    ``split_dir``; class ids are 1..N in the order of ``classes`` (BOP object ids may have gaps).
    """
    class_of = {c.obj_id: k + 1 for k, c in enumerate(classes)}
    count = 0
    scenes = sorted(p for p in Path(split_dir).iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))
    for scene in scenes:
        gts = _json(scene / "scene_gt.json")
        cameras = _json(scene / "scene_camera.json")
        for key in sorted(gts, key=int):
            if max_frames and count >= max_frames:
                return
            rgb = _read_rgb(scene / "rgb", int(key))
            label = np.zeros(rgb.shape[:2], np.uint8)
            instance = np.zeros(rgb.shape[:2], np.uint8)
            objects = []
            for k, gt in enumerate(gts[key][:254]):
                obj_id = int(gt["obj_id"])
                if obj_id not in class_of:
                    raise ValueError(f"{scene}/scene_gt.json: frame {key} shows obj_id {obj_id}, which has no "
                                     "model in models/models_info.json")
                mask_path = scene / "mask_visib" / f"{int(key):06d}_{k:06d}.png"
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if mask is None:
                    raise FileNotFoundError(f"{mask_path} is missing (BOP mask_visib of object {k} of frame {key})")
                if mask.shape != label.shape:
                    raise ValueError(f"{mask_path}: mask {mask.shape} does not match the image {label.shape}")
                visible = mask > 0
                instance[visible] = k + 1
                label[visible] = class_of[obj_id]
                pose = np.eye(4)
                pose[:3, :3] = np.asarray(gt["cam_R_m2c"], float).reshape(3, 3)
                pose[:3, 3] = np.asarray(gt["cam_t_m2c"], float) / 1000.0
                if not np.isfinite(pose).all():
                    raise ValueError(f"{scene}/scene_gt.json: frame {key}, object {k}: the pose has NaN")
                objects.append((k + 1, class_of[obj_id], pose))
            K = np.asarray(cameras[key]["cam_K"], float).reshape(3, 3)
            count += 1
            yield rgb, label, instance, K, objects


def read_bop(bop_dir, width: int, height: int, split: str = "", max_frames: int = 0, min_pixels: int = 20):
    """``(SceneTensors, classes)`` of a BOP dataset at the network's input size."""
    # lazy: posecnn.data loads torch, which export-bop does not need
    from inerf_ros.posecnn.data import frames_to_tensors

    classes = read_classes(bop_dir)
    split_dir = find_split(bop_dir, split)
    data = frames_to_tensors(iter_frames(split_dir, classes, max_frames), width, height, min_pixels, str(split_dir))
    return data, classes


def _json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (a BOP scene folder has scene_gt.json and scene_camera.json)")
    return json.loads(path.read_text())


def _read_rgb(folder: Path, index: int) -> np.ndarray:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{index:06d}{suffix}"
        if path.is_file():
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{path}: not a readable image")
            return bgr[:, :, ::-1].copy()
    raise FileNotFoundError(f"{folder}/{index:06d}.png (or .jpg) is missing")


# -- command --------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``inerf-ros export-bop``."""
    parser.add_argument("--scene", required=True, help="scene directory (make-scene / make-posecnn-data --out)")
    parser.add_argument("--out", required=True, help="BOP dataset folder to write (models/ + SPLIT/SCENE_ID/)")
    parser.add_argument("--split", default="posecnn_train", help="split of the scene to export")
    parser.add_argument("--bop-split", default="train_pbr", help="BOP split folder name to write")
    parser.add_argument("--scene-id", type=int, default=0, help="BOP scene folder number")


def run(args: argparse.Namespace) -> int:
    """``inerf-ros export-bop``: one line on success, one error line on bad input."""
    try:
        target = export_split(args.scene, args.split, args.out, args.bop_split, args.scene_id)
    except (ValueError, OSError) as err:
        print(f"export-bop: error: {err}", file=sys.stderr)
        return 2
    print(f"export-bop: wrote {target} and {Path(args.out) / 'models'}")
    return 0
