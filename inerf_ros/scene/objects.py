"""Object models: procedural household objects (box, can, mug, bottle) and meshes from files.

A model is a triangle mesh in its object frame (metres) with one texture coordinate per vertex and
a texture image. Procedural objects have their origin at the centre of their bounding box and z
along their height; mesh objects keep the frame of their file.

Texture coordinates follow MuJoCo's ``.msh`` convention used by the renderer: ``(s, t)`` with
``t = 0`` at the top row of the texture image (OBJ/PLY files use ``t = 0`` at the bottom row and
are flipped when read).
"""
from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path

import cv2
import numpy as np

from inerf_ros.scene import textures

PROCEDURAL_TYPES = ("box", "can", "mug", "bottle")
OBJECT_TYPES = PROCEDURAL_TYPES + ("mesh",)


@dataclasses.dataclass
class Model:
    """A textured triangle mesh in its object frame."""

    vertices: np.ndarray  # (n, 3) float64, metres
    faces: np.ndarray     # (m, 3) int64, counter-clockwise seen from outside
    uv: np.ndarray        # (n, 2) float64, t = 0 at the top row of ``texture``
    texture: np.ndarray   # (H, W, 3) uint8 RGB
    symmetry: str = "none"  # none | continuous_z
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    @property
    def diameter(self) -> float:
        """Largest vertex distance (on the convex hull's candidates: extreme points of many directions)."""
        v = self.vertices
        if len(v) > 2000:  # exact on a subset of extreme points, enough for BOP's diameter
            dirs = np.random.default_rng(0).normal(size=(256, 3))
            idx = np.unique(np.concatenate([np.argmax(v @ dirs.T, axis=0), np.argmin(v @ dirs.T, axis=0)]))
            v = v[idx]
        d = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)
        return float(d.max())


def _drop_degenerate(vertices, faces):
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return faces[area > 1e-12]


def box_mesh(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box centred at the origin; each face maps to one cell of a 3x2 texture atlas.

    Cells (row, column): (0,0) +x, (0,1) -x, (0,2) +y, (1,0) -y, (1,1) +z, (1,2) -z; each face's
    "up" in the texture is +z (or +y for the z faces).
    """
    h = np.array([sx, sy, sz]) / 2
    # For each face: centre normal, u axis, v axis (v = texture up).
    faces_def = [((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
                 ((0, 1, 0), (-1, 0, 0), (0, 0, 1)), ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
                 ((0, 0, 1), (1, 0, 0), (0, 1, 0)), ((0, 0, -1), (-1, 0, 0), (0, 1, 0))]
    vertices, uv, faces = [], [], []
    margin = 0.01
    for k, (n, u, v) in enumerate(faces_def):
        n, u, v = (np.array(x, float) for x in (n, u, v))
        row, col = divmod(k, 3)
        base = len(vertices)
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            vertices.append(n * h + su * u * h + sv * v * h)
            # s across the cell, t down the cell (t = 0 at the top row: texture "up" is +v).
            s = (col + margin + (1 - 2 * margin) * (su + 1) / 2) / 3
            t = (row + margin + (1 - 2 * margin) * (1 - sv) / 2) / 2
            uv.append((s, t))
        faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return np.array(vertices), np.array(faces, np.int64), np.array(uv)


def lathe_mesh(profile: list[tuple[float, float]], segments: int = 48):
    """Surface of revolution about z of a polyline ``[(r, z), ...]``.

    Walk the profile so that the solid lies on its left when going from one point to the next seen
    with r to the right and z up (e.g. bottom centre -> outer wall upwards -> top centre): faces then
    point outwards. Returns vertices, faces, uv (s = angle / 2 pi, t = 1 - arc length fraction, so
    the top of the profile is the top of the texture) and the arc-length fraction of every profile point.
    """
    prof = np.asarray(profile, float)
    seg = np.linalg.norm(np.diff(prof, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)]) / seg.sum()
    angles = np.linspace(0.0, 2 * np.pi, segments + 1)
    r, z = prof[:, 0], prof[:, 1]
    vx = r[None, :] * np.cos(angles)[:, None]
    vy = r[None, :] * np.sin(angles)[:, None]
    vz = np.broadcast_to(z[None, :], vx.shape)
    vertices = np.stack([vx, vy, vz], axis=-1).reshape(-1, 3)
    s = np.broadcast_to((angles / (2 * np.pi))[:, None], vx.shape)
    t = np.broadcast_to(1.0 - arc[None, :], vx.shape)
    uv = np.stack([s, t], axis=-1).reshape(-1, 2)
    n_p = len(prof)
    i, j = np.meshgrid(np.arange(segments), np.arange(n_p - 1), indexing="ij")
    a = (i * n_p + j).ravel()
    b = ((i + 1) * n_p + j).ravel()
    c = ((i + 1) * n_p + j + 1).ravel()
    d = (i * n_p + j + 1).ravel()
    # Quads (a: angle i, point j) -> (b: angle i+1) -> (c) -> (d). Normal = d(angle) x d(profile).
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, _drop_degenerate(vertices, faces), uv, arc


def _centre(vertices: np.ndarray) -> np.ndarray:
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    return vertices - (lo + hi) / 2


def make_procedural(kind: str, size: list[float], text: str, color, rng: np.random.Generator,
                    texture_size: int = 1024) -> Model:
    """A procedural object of ``kind`` (box: [x, y, z]; can, bottle, mug: [diameter, height]), metres."""
    if kind == "box":
        if len(size) != 3 or min(size) <= 0:
            raise ValueError(f"a box needs size [x, y, z] > 0 in metres, got {size}")
        vertices, faces, uv = box_mesh(*size)
        texture = textures.box_atlas(rng, tuple(size), text, color, texture_size)
        return Model(vertices, faces, uv, texture, "none", {"type": "box", "size": list(size)})
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"a {kind} needs size [diameter, height] > 0 in metres, got {size}")
    radius, height = size[0] / 2, size[1]
    if kind == "can":
        rim = min(0.004, 0.1 * radius)
        profile = [(0.0, 0.0), (radius - rim, 0.0), (radius, rim), (radius, height - rim),
                   (radius - rim, height), (0.0, height)]
        bands_at = (2, 3)
    elif kind == "bottle":
        neck, cap_h = 0.35 * radius, 0.12 * height
        shoulder = 0.62 * height
        profile = [(0.0, 0.0), (radius * 0.92, 0.0), (radius, 0.03 * height), (radius, shoulder),
                   (radius * 0.8, shoulder + 0.08 * height), (neck, height - cap_h - 0.05 * height),
                   (neck, height - cap_h), (neck * 1.25, height - cap_h), (neck * 1.25, height), (0.0, height)]
        bands_at = (2, 3)
    elif kind == "mug":
        wall = max(0.003, 0.08 * radius)
        profile = [(0.0, 0.0), (radius, 0.0), (radius, height), (radius - wall, height),
                   (radius - wall, wall), (0.0, wall)]
        bands_at = (1, 2)
    else:
        raise ValueError(f"unknown procedural object type {kind!r}; choose from {PROCEDURAL_TYPES}")
    vertices, faces, uv, arc = lathe_mesh(profile, segments=64)
    v_label = (1.0 - arc[bands_at[1]], 1.0 - arc[bands_at[0]])  # rows of the side wall in the texture
    if kind == "mug":
        bands = [(0.0, v_label[0], "glaze"), v_label + ("glaze",), (v_label[1], 1.0, "glaze")]
        handle_v, handle_f, handle_uv = _mug_handle(radius, height, wall)
        handle_uv[:, 1] = v_label[0] + 0.5 * (v_label[1] - v_label[0])
        faces = np.concatenate([faces, handle_f + len(vertices)])
        vertices = np.concatenate([vertices, handle_v])
        uv = np.concatenate([uv, handle_uv])
        symmetry = "none"
    else:
        bands = [(0.0, v_label[0], "metal" if kind == "can" else "plastic"), v_label + ("label",),
                 (v_label[1], 1.0, "metal" if kind == "can" else "plastic")]
        symmetry = "continuous_z"
    texture = textures.lathe_texture(rng, bands, text, color, texture_size)
    vertices = _centre(vertices)
    return Model(vertices, faces, uv, texture, symmetry, {"type": kind, "size": list(size)})


def _mug_handle(radius: float, height: float, wall: float, segments: int = 24, sides: int = 12):
    """A half torus on the +x side of the mug (tube radius ~ wall), as vertices, faces, uv."""
    tube = max(0.005, 1.4 * wall)
    loop = 0.3 * height
    centre = np.array([radius, 0.0, 0.5 * height])
    vertices, uv = [], []
    for i in range(segments + 1):
        a = -np.pi / 2 + np.pi * i / segments
        spine = centre + np.array([loop * np.cos(a), 0.0, loop * np.sin(a)])
        tangent = np.array([-np.sin(a), 0.0, np.cos(a)])
        normal = np.array([np.cos(a), 0.0, np.sin(a)])
        binormal = np.cross(tangent, normal)
        for k in range(sides + 1):
            b = 2 * np.pi * k / sides
            vertices.append(spine + tube * (np.cos(b) * normal + np.sin(b) * binormal))
            uv.append((k / sides, 0.0))
    faces = []
    for i in range(segments):
        for k in range(sides):
            a, b = i * (sides + 1) + k, (i + 1) * (sides + 1) + k
            faces += [(a, b, b + 1), (a, b + 1, a + 1)]
    return np.array(vertices), np.array(faces, np.int64), np.array(uv)


# ---------------------------------------------------------------------------------------------------
# Meshes from files.

def read_msh(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """MuJoCo binary ``.msh``: int32 counts (vertices, normals, texcoords, faces), float32 data, int32 faces."""
    data = Path(path).read_bytes()
    if len(data) < 16:
        raise ValueError(f"{path}: too short for a MuJoCo .msh file")
    nv, nn, nt, nf = struct.unpack("<4i", data[:16])
    expected = 16 + 4 * (3 * nv + 3 * nn + 2 * nt + 3 * nf)
    if min(nv, nn, nt, nf) < 0 or len(data) != expected:
        raise ValueError(f"{path}: counts {nv, nn, nt, nf} do not match the file size {len(data)} "
                         f"(expected {expected})")
    floats = np.frombuffer(data, "<f4", 3 * nv + 3 * nn + 2 * nt, 16)
    vertices = floats[:3 * nv].reshape(-1, 3).astype(np.float64)
    uv = floats[3 * nv + 3 * nn:].reshape(-1, 2).astype(np.float64) if nt else None
    if uv is not None and nt != nv:
        raise ValueError(f"{path}: {nt} texture coordinates for {nv} vertices (need one per vertex)")
    faces = np.frombuffer(data, "<i4", 3 * nf, 16 + 4 * (3 * nv + 3 * nn + 2 * nt)).reshape(-1, 3).astype(np.int64)
    return vertices, faces, uv


def write_msh(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> bytes:
    """Bytes of a MuJoCo ``.msh`` with vertices, one texcoord per vertex and faces (no normals)."""
    header = struct.pack("<4i", len(vertices), 0, len(uv), len(faces))
    return (header + np.asarray(vertices, "<f4").tobytes() + np.asarray(uv, "<f4").tobytes()
            + np.asarray(faces, "<i4").tobytes())


def read_obj(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Wavefront OBJ: vertices, triangles (polygons fanned), per-vertex uv (t flipped), texture from the .mtl."""
    path = Path(path)
    positions, texcoords, corners, faces = [], [], {}, []
    vertices, uv = [], []
    mtl_texture = ""
    mtllibs = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            positions.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            texcoords.append([float(x) for x in parts[1:3]])
        elif parts[0] == "mtllib":
            mtllibs.append(" ".join(parts[1:]))
        elif parts[0] == "f":
            ids = []
            for corner in parts[1:]:
                fields = corner.split("/")
                vi = int(fields[0])
                ti = int(fields[1]) if len(fields) > 1 and fields[1] else 0
                vi = vi - 1 if vi > 0 else len(positions) + vi
                ti = (ti - 1 if ti > 0 else len(texcoords) + ti) if ti else -1
                key = (vi, ti)
                if key not in corners:
                    corners[key] = len(vertices)
                    vertices.append(positions[vi])
                    uv.append(texcoords[ti] if ti >= 0 else [0.0, 0.0])
                ids.append(corners[key])
            faces += [(ids[0], ids[k], ids[k + 1]) for k in range(1, len(ids) - 1)]
    for lib in mtllibs:
        mtl = path.parent / lib
        if mtl.is_file():
            for line in mtl.read_text(errors="replace").splitlines():
                parts = line.split()
                if parts and parts[0] == "map_Kd" and not mtl_texture:
                    mtl_texture = str(path.parent / parts[-1])
    if not faces:
        raise ValueError(f"{path}: no faces found")
    uv_arr = np.array(uv, float)
    uv_arr[:, 1] = 1.0 - uv_arr[:, 1]
    return np.array(vertices, float), np.array(faces, np.int64), uv_arr if texcoords else None, mtl_texture


def read_ply_any(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """PLY (ascii or binary little-endian): x y z (+ s t / u v / texture_u texture_v), triangle lists."""
    path = Path(path)
    data = path.read_bytes()
    end = data.index(b"end_header") + len(b"end_header")
    end = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = header[1].split()[1]
    elements, texture = [], ""
    types = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2",
             "int16": "i2", "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
    for line in header:
        parts = line.split()
        if parts[:2] == ["comment", "TextureFile"]:
            texture = str(path.parent / parts[2])
        elif parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"]:
            elements[-1][2].append(parts[1:])
    if fmt not in ("ascii", "binary_little_endian"):
        raise ValueError(f"{path}: PLY format {fmt} is not supported (use ascii or binary_little_endian)")
    vertex_cols: dict[str, np.ndarray] = {}
    faces = None
    if fmt == "ascii":
        tokens = data[end:].split()
        pos = 0
        for name, count, props in elements:
            if name == "vertex":
                n = len(props)
                block = np.array(tokens[pos:pos + n * count], float).reshape(count, n)
                pos += n * count
                vertex_cols = {p[-1]: block[:, i] for i, p in enumerate(props)}
            else:
                rows = []
                for _ in range(count):
                    k = int(tokens[pos])
                    rows.append([int(t) for t in tokens[pos + 1:pos + 1 + k]])
                    pos += 1 + k
                if name == "face":
                    faces = [(r[0], r[i], r[i + 1]) for r in rows for i in range(1, len(r) - 1)]
    else:
        offset = end
        for name, count, props in elements:
            if all(p[0] != "list" for p in props):
                dtype = np.dtype([(p[-1], "<" + types[p[0]]) for p in props])
                block = np.frombuffer(data, dtype, count, offset)
                offset += dtype.itemsize * count
                if name == "vertex":
                    vertex_cols = {p[-1]: block[p[-1]].astype(float) for p in props}
            else:
                if len(props) != 1:
                    raise ValueError(f"{path}: element {name} mixes lists and scalars; not supported")
                _, count_t, index_t, _ = props[0]
                rows = []
                for _ in range(count):
                    k = int(np.frombuffer(data, "<" + types[count_t], 1, offset)[0])
                    offset += np.dtype(types[count_t]).itemsize
                    idx = np.frombuffer(data, "<" + types[index_t], k, offset)
                    offset += idx.nbytes
                    rows.append(idx.tolist())
                if name == "face":
                    faces = [(r[0], r[i], r[i + 1]) for r in rows for i in range(1, len(r) - 1)]
    if not faces or not {"x", "y", "z"} <= set(vertex_cols):
        raise ValueError(f"{path}: needs vertex x, y, z and faces")
    vertices = np.stack([vertex_cols["x"], vertex_cols["y"], vertex_cols["z"]], axis=1)
    uv = None
    for su, sv in (("s", "t"), ("u", "v"), ("texture_u", "texture_v")):
        if su in vertex_cols and sv in vertex_cols:
            uv = np.stack([vertex_cols[su], 1.0 - vertex_cols[sv]], axis=1)
            break
    return vertices, np.array(faces, np.int64), uv, texture


def load_mesh_model(mesh_path, texture_path: str = "", scale: float = 1.0, symmetry: str = "none",
                    max_texture_size: int = 1024, color=None) -> Model:
    """A model from a mesh file (``.obj``, ``.ply``, ``.msh``) and its texture image (PNG/JPEG)."""
    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise FileNotFoundError(f"mesh file {mesh_path} does not exist")
    suffix = mesh_path.suffix.lower()
    if suffix == ".msh":
        vertices, faces, uv = read_msh(mesh_path)
        file_texture = ""
    elif suffix == ".obj":
        vertices, faces, uv, file_texture = read_obj(mesh_path)
    elif suffix == ".ply":
        vertices, faces, uv, file_texture = read_ply_any(mesh_path)
    else:
        raise ValueError(f"{mesh_path}: unsupported mesh format {suffix!r} (use .obj, .ply or .msh)")
    if faces.size == 0 or faces.max() >= len(vertices) or faces.min() < 0:
        raise ValueError(f"{mesh_path}: face indices out of range for {len(vertices)} vertices")
    texture_file = texture_path or file_texture
    if texture_file:
        bgr = cv2.imread(str(texture_file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read texture {texture_file} (for {mesh_path})")
        texture = bgr[:, :, ::-1]
        longest = max(texture.shape[:2])
        if longest > max_texture_size:
            f = max_texture_size / longest
            texture = cv2.resize(texture, (max(1, round(texture.shape[1] * f)), max(1, round(texture.shape[0] * f))),
                                 interpolation=cv2.INTER_AREA)
        texture = np.ascontiguousarray(texture)
    else:
        rgb = np.asarray(color if color else (0.7, 0.7, 0.7), float)
        texture = np.tile((rgb * 255).astype(np.uint8), (4, 4, 1))
    if uv is None:
        uv = np.zeros((len(vertices), 2))
    params = {"type": "mesh", "mesh": str(mesh_path), "texture": str(texture_file), "scale": scale}
    return Model(vertices * scale, faces, uv, texture, symmetry, params)


def bbox_contains(model: Model, obj_T_point: np.ndarray, margin: float = 0.0) -> bool:
    """Whether an object-frame point lies inside the model's bounding box grown by ``margin`` metres."""
    lo, hi = model.bbox
    p = np.asarray(obj_T_point, float)
    return bool(np.all(p >= lo - margin) and np.all(p <= hi + margin))


def rpy_matrix(rpy_deg) -> np.ndarray:
    """Rotation of extrinsic roll-pitch-yaw angles (x, then y, then z about fixed axes), degrees."""
    r, p, y = (math.radians(float(a)) for a in rpy_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    return rz @ ry @ rx
