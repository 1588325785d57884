"""Mesh folders as users have them -> the ``objects:`` entries of a scene config.

Layouts (found by :func:`read_mesh_folder`):

- ``ycb_sim``: ``meshes/*.msh`` with ``textures/<same name>.png`` (MuJoCo's YCB set, ``../shared/data/ycb_sim``);
- ``bop``: a BOP ``models/`` folder, ``obj_NNNNNN.ply`` with ``models_info.json`` (or the dataset's root
  holding ``models/``); symmetries come from ``symmetries_continuous`` / ``symmetries_discrete``;
- ``plain``: ``.obj`` (+ ``.mtl`` + texture), ``.ply`` (texture or vertex colours) or ``.msh`` files in the
  folder, one object per file name, or one sub-folder per object (YCB's own download:
  ``002_master_chef_can/google_16k/textured.obj``).

Decisions, each said in the folder's notes:

- Units: a mesh more than :data:`MM_EXTENT` units across is in millimetres (BOP's unit; a tabletop
  object is not 3 m long, nor 3 mm) and is scaled by 0.001.
- Colour: the texture (the one the file names, else an image of the same name beside a mesh with
  texture coordinates), else the file's vertex or material colours; an untextured mesh is *accepted*
  with a flat grey and a warning (the detector can learn its shape, and a flat grey will not look
  like the real object in a photo: texture it for real cameras).
- Faces without area are dropped and counted; a mesh with none left, a broken file or a missing
  texture named by a file is refused with one error naming the file, before anything is written.
- Symmetry: from ``models_info.json`` for BOP; else ``continuous_z`` when the mesh is a surface of
  revolution about its z axis (a can), tested on points sampled from its surface. The scene format
  knows only ``none`` and ``continuous_z``: other symmetries are noted and scored as ``none``.

Every object gets ``recentre: true`` (PoseCNN votes for the model frame's origin: the centre of the
bounding box is a point it can see) and a place on a grid on the table.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np

from inerf_ros.scene import objects as obj_lib

MM_EXTENT = 3.0             # file units: larger meshes are in millimetres
PLAUSIBLE_EXTENT_M = (0.01, 2.0)  # outside this a tabletop object's units are probably wrong
MESH_SUFFIXES = (".obj", ".ply", ".msh")
_BOP_NAME = re.compile(r"^obj_(\d+)\.ply$", re.IGNORECASE)
# Within one object's sub-folder: YCB's 16k-point textured scan first, then by format.
_FORMAT_RANK = {".obj": 0, ".ply": 1, ".msh": 2}


@dataclasses.dataclass
class MeshEntry:
    """One object of a mesh folder, checked by loading it."""

    name: str
    mesh: Path
    texture: str             # texture image given beside the mesh ("" = the one the file names, if any)
    scale: float             # file units -> metres
    symmetry: str            # none | continuous_z
    extent_m: list[float]    # bounding box size in metres
    faces: int
    dropped_faces: int       # faces without area, dropped
    colour_source: str       # texture | colours | flat

    def scene_entry(self, position) -> dict:
        """The entry of a scene config's ``objects:`` list (see ``inerf_ros.scene.config.ObjectSpec``)."""
        return {"name": self.name, "type": "mesh", "mesh": str(self.mesh), "texture": self.texture,
                "scale": self.scale, "recentre": True, "symmetry": self.symmetry,
                "position": [float(p) for p in position], "rpy_deg": [0.0, 0.0, 0.0]}


@dataclasses.dataclass
class MeshFolder:
    """The objects of one mesh folder, its layout and what was decided while reading it."""

    path: Path
    layout: str              # ycb_sim | bop | plain
    entries: list[MeshEntry]
    notes: list[str]         # what was decided (units, symmetries, dropped faces); "warning: ..." for doubts

    def objects(self, table_size=(1.0, 0.7)) -> list[dict]:
        """Scene ``objects:`` entries, each resting on its own cell of a grid on the table."""
        return [e.scene_entry(p) for e, p in zip(self.entries, grid_positions(len(self.entries), table_size))]

    def describe(self) -> str:
        """A few lines for the user: each object's file, size, faces, colour source and symmetry; the notes."""
        lines = [f"{self.path}: {len(self.entries)} objects ({self.layout} layout)"]
        for e in self.entries:
            size = " x ".join(f"{100 * v:.1f}" for v in e.extent_m)
            lines.append(f"  {e.name}: {e.mesh.name}, {size} cm, {e.faces} faces, colour from {e.colour_source}, "
                         f"symmetry {e.symmetry}")
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def grid_positions(count: int, table_size=(1.0, 0.7)) -> list[tuple[float, float]]:
    """Cell centres of a grid of ``count`` cells over the table's inner 80 %, row by row, metres."""
    sx, sy = (0.8 * float(s) for s in table_size)
    cols = max(1, math.ceil(math.sqrt(count * sx / sy)))
    rows = max(1, math.ceil(count / cols))
    return [(-sx / 2 + (k % cols + 0.5) * sx / cols, sy / 2 - (k // cols + 0.5) * sy / rows) for k in range(count)]


def objects_from_mesh_folder(path, scale: float = 0.0) -> list[dict]:
    """The scene config ``objects:`` entries of every mesh in the folder ``path`` (see the module doc).

    ``scale``: file units -> metres for every mesh (0: each mesh's own, millimetres when larger
    than :data:`MM_EXTENT` units). Raises ValueError / FileNotFoundError naming the bad file.
    """
    return read_mesh_folder(path, scale).objects()


def read_mesh_folder(path, scale: float = 0.0) -> MeshFolder:
    """Find the folder's layout and objects, load every mesh (so that a bad one fails now), decide units."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"mesh folder {path} does not exist or is not a folder")
    if not (scale >= 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be 0 (automatic) or a positive factor to metres, got {scale}")
    notes: list[str] = []
    bop_dir = _bop_models_dir(path)
    if bop_dir is not None:
        layout, found = "bop", _bop_objects(bop_dir, notes)
    elif (path / "meshes").is_dir() and any((path / "meshes").glob("*.msh")):
        layout, found = "ycb_sim", _ycb_sim_objects(path, notes)
    else:
        layout, found = "plain", _plain_objects(path, notes)
    if not found:
        raise ValueError(f"{path}: no meshes found (looked for {', '.join(MESH_SUFFIXES)} files, a ycb_sim "
                         "meshes/ folder and a BOP models/ folder)")
    names = _class_names([name for name, *_ in found])
    entries = [_load_entry(name, mesh, texture, symmetry, scale, layout, notes)
               for name, (_, mesh, texture, symmetry) in zip(names, found)]
    return MeshFolder(path, layout, entries, notes)


def _class_names(raw: list[str]) -> list[str]:
    """Class names from file names: unsafe characters become "_", a numeric prefix ("002_") goes when the
    names stay unique.
    """
    safe = [re.sub(r"[^A-Za-z0-9_-]+", "_", n).strip("_") or "object" for n in raw]
    stripped = [re.sub(r"^\d+[_-]", "", n) or n for n in safe]
    names = stripped if len(set(stripped)) == len(stripped) else safe
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two meshes would be the same class {repeated}: rename one of the files")
    return names


def _load_entry(name, mesh_path: Path, texture: str, symmetry: str | None, scale: float, layout: str,
                notes: list[str]) -> MeshEntry:
    model = obj_lib.load_mesh_model(mesh_path, texture, 1.0, "none", max_texture_size=256)
    sibling = _sibling_image(mesh_path)
    if model.params["colour_source"] == "flat" and sibling and obj_lib.parse_mesh_file(mesh_path).uv is not None:
        # Texture coordinates but no texture named: exporters often leave the image beside the mesh.
        texture = str(sibling.resolve())
        model = obj_lib.load_mesh_model(mesh_path, texture, 1.0, "none", max_texture_size=256)
        notes.append(f"{mesh_path.name}: names no texture; using {sibling.name} beside it")
    extent = float(np.ptp(model.vertices, axis=0).max())
    if scale == 0.0:
        if extent > MM_EXTENT:
            scale = 0.001
            notes.append(f"{mesh_path.name}: {extent:.1f} units across: millimetres, scaled by 0.001 "
                         f"to {extent * scale:.3f} m")
        else:
            scale = 1.0
            if layout == "bop":
                notes.append(f"warning: {mesh_path.name}: {extent:.3f} units across, read as metres although "
                             "BOP models are in millimetres")
    extent_m = [float(v) for v in np.ptp(model.vertices, axis=0) * scale]
    low, high = PLAUSIBLE_EXTENT_M
    if not low <= max(extent_m) <= high:
        notes.append(f"warning: {mesh_path.name} is {max(extent_m):.4f} m across: check its units "
                     "(pass the factor to metres)")
    dropped = int(model.params["dropped_faces"])
    if dropped:
        notes.append(f"{mesh_path.name}: dropped {dropped} faces without area")
    source = model.params["colour_source"]
    if source == "flat":
        notes.append(f"warning: {mesh_path.name} has no texture or colours: rendered flat grey, so the "
                     "detector learns its shape only and a photo of the real object will look different")
    if symmetry is None:
        symmetry = "continuous_z" if is_revolution_about_z(model.vertices, model.faces) else "none"
        if symmetry == "continuous_z":
            notes.append(f"{mesh_path.name}: a surface of revolution about z: symmetry continuous_z")
    return MeshEntry(name, mesh_path.resolve(), texture, scale, symmetry, extent_m, len(model.faces), dropped, source)


def _sibling_image(mesh_path: Path) -> Path | None:
    return next((mesh_path.with_suffix(ext) for ext in (".png", ".jpg", ".jpeg")
                 if mesh_path.with_suffix(ext).is_file()), None)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points (count, 3) spread over the mesh's surface by area (not by vertex density)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if area.sum() <= 0:
        raise ValueError("the mesh has no area")
    pick = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    flip = r1 + r2 > 1  # fold the unit square onto the triangle
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    return a[pick] + r1[:, None] * (b[pick] - a[pick]) + r2[:, None] * (c[pick] - a[pick])


def is_revolution_about_z(vertices: np.ndarray, faces: np.ndarray, samples: int = 3000) -> bool:
    """Whether the shape is unchanged by turns about the z axis through its bounding box's centre.

    Points sampled from the surface, turned, are compared with a second sample: a surface of
    revolution keeps them as close as two samples of the same surface are (scanned cans included).
    """
    from scipy.spatial import cKDTree  # lazy: scipy is heavy and only this test needs it

    rng = np.random.default_rng(0)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    first = sample_surface(vertices - centre, faces, samples, rng)
    tree = cKDTree(sample_surface(vertices - centre, faces, samples, rng))
    baseline = tree.query(first)[0].mean()
    for angle in np.radians([40.0, 90.0, 150.0, 220.0]):
        c, s = math.cos(angle), math.sin(angle)
        turned = first @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
        if tree.query(turned)[0].mean() > 1.5 * baseline:
            return False
    return True


# -- layouts: each returns [(raw name, mesh path, texture, symmetry or None = test the shape)] ------------

def _bop_models_dir(path: Path) -> Path | None:
    for folder in (path, path / "models"):
        if folder.is_dir() and ((folder / "models_info.json").is_file()
                                or any(_BOP_NAME.match(p.name) for p in folder.iterdir())):
            return folder
    return None


def _bop_objects(folder: Path, notes: list[str]) -> list[tuple]:
    info_path = folder / "models_info.json"
    files = {int(m.group(1)): p for p in sorted(folder.iterdir()) if (m := _BOP_NAME.match(p.name))}
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: a BOP models folder needs it (units, diameters, "
                                "symmetries); for plain meshes rename the obj_NNNNNN.ply files")
    try:
        info = json.loads(info_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{info_path}: not valid JSON: {error}") from None
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise ValueError(f"{info_path}: expected an object of objects {{\"1\": {{\"diameter\": ...}}, ...}}")
    try:
        info = {int(k): v for k, v in info.items()}
    except ValueError:
        raise ValueError(f"{info_path}: keys must be object ids (integers), got {sorted(info)}") from None
    missing = sorted(set(info) - set(files))
    if missing:
        raise FileNotFoundError(f"{info_path} lists object {missing[0]} but {folder / f'obj_{missing[0]:06d}.ply'} "
                                "is missing")
    unlisted = sorted(set(files) - set(info))
    if unlisted:
        raise ValueError(f"{files[unlisted[0]]} has no entry in {info_path}")
    found = []
    for obj_id in sorted(info):
        symmetry = _bop_symmetry(info[obj_id], files[obj_id].name, notes)
        found.append((files[obj_id].stem, files[obj_id], "", symmetry))
    return found


def _bop_symmetry(entry: dict, name: str, notes: list[str]) -> str:
    """continuous_z for a continuous symmetry about the z axis through the box centre, else none (noted)."""
    symmetry = "none"
    centre = np.array([entry.get(f"min_{a}", 0.0) + entry.get(f"size_{a}", 0.0) / 2 for a in "xyz"], float)
    tolerance = 0.02 * float(entry.get("diameter", 1.0))
    for sym in entry.get("symmetries_continuous", []) or []:
        axis = np.asarray(sym.get("axis", [0, 0, 0]), float)
        offset = np.asarray(sym.get("offset", [0, 0, 0]), float)
        norm = np.linalg.norm(axis)
        if norm > 0 and abs(axis[2]) / norm > 0.99 and np.all(np.abs(offset[:2] - centre[:2]) <= tolerance):
            symmetry = "continuous_z"
        else:
            notes.append(f"warning: {name}: continuous symmetry about {axis.tolist()} through {offset.tolist()} "
                         "is not about z through the box centre: scored as none")
    discrete = entry.get("symmetries_discrete", []) or []
    if discrete and symmetry == "none":
        notes.append(f"warning: {name}: {len(discrete)} discrete symmetries are not expressible in a scene "
                     "(none | continuous_z): scored as none, so its symmetric flips count as errors")
    elif symmetry == "continuous_z":
        notes.append(f"{name}: symmetry continuous_z (models_info.json)")
    return symmetry


def _ycb_sim_objects(path: Path, notes: list[str]) -> list[tuple]:
    found = []
    for mesh in sorted((path / "meshes").glob("*.msh")):
        texture = next((path / "textures" / (mesh.stem + ext) for ext in (".png", ".jpg", ".jpeg")
                        if (path / "textures" / (mesh.stem + ext)).is_file()), None)
        found.append((mesh.stem, mesh, str(texture.resolve()) if texture else "", None))
    return found


def _plain_objects(path: Path, notes: list[str]) -> list[tuple]:
    """One object per mesh file name in the folder, and one per sub-folder holding meshes."""
    by_stem: dict[str, list[Path]] = {}
    for p in sorted(path.iterdir()):
        if p.is_file() and p.suffix.lower() in MESH_SUFFIXES:
            by_stem.setdefault(p.stem, []).append(p)
    found = []
    for stem, paths in by_stem.items():
        chosen = _preferred(paths, path)
        if len(paths) > 1:
            notes.append(f"{stem}: several files, using {chosen.name}")
        found.append((stem, chosen, "", None))
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        paths = [p for p in sorted(sub.rglob("*")) if p.is_file() and p.suffix.lower() in MESH_SUFFIXES]
        if paths:
            chosen = _preferred(paths, sub)
            if len(paths) > 1:
                notes.append(f"{sub.name}: {len(paths)} mesh files, using {chosen.relative_to(path)}")
            found.append((sub.name, chosen, "", None))
    return found


def _preferred(paths: list[Path], root: Path) -> Path:
    def rank(p: Path):
        rel = p.relative_to(root)
        return ("google_16k" not in rel.parts, _FORMAT_RANK[p.suffix.lower()], len(rel.parts), str(rel))
    return min(paths, key=rank)
