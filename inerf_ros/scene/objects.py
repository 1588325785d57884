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
        """(lowest, highest) vertex coordinates along x, y, z, metres in the object frame."""
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


@dataclasses.dataclass
class MeshData:
    """What a mesh file holds, in its own units: triangles, per-vertex uv, its texture or colours."""

    vertices: np.ndarray                # (n, 3) float64, file units
    faces: np.ndarray                   # (m, 3) int64
    uv: np.ndarray | None               # (n, 2), t = 0 at the top row; None when the file has none
    texture: str = ""                   # texture image the file names (.mtl map_Kd, PLY comment TextureFile)
    face_rgb: np.ndarray | None = None  # (m, 3) uint8 colour per face (vertex colours, OBJ material Kd)


def _obj_index(text: str, count: int, what: str) -> int:
    """A 0-based index from an OBJ 1-based (or negative, relative) index."""
    i = int(text)
    i = i - 1 if i > 0 else count + i
    if not 0 <= i < count:
        raise ValueError(f"{what} index {text} out of range (1..{count} defined so far)")
    return i


def _read_mtl(path: Path) -> dict[str, dict]:
    """Materials of a .mtl file: name -> {"Kd": rgb in [0, 1] or None, "map_Kd": path or ""}."""
    materials: dict[str, dict] = {}
    current = None
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "newmtl":
            current = materials.setdefault(" ".join(parts[1:]), {"Kd": None, "map_Kd": ""})
        elif current is not None and parts[0] == "Kd" and len(parts) >= 4:
            current["Kd"] = [float(x) for x in parts[1:4]]
        elif current is not None and parts[0] == "map_Kd" and len(parts) >= 2:
            current["map_Kd"] = str(path.parent / parts[-1])  # options (-s, -o) come before the file name
    return materials


def parse_obj(path) -> MeshData:
    """Wavefront OBJ: triangles (polygons fanned), per-vertex uv (t flipped), the texture or colours.

    Colour comes from the first ``map_Kd`` of the .mtl files, else from the materials' ``Kd`` (one
    colour per face, by ``usemtl``), else from vertex colours (``v x y z r g b``).
    """
    path = Path(path)
    positions, colours, texcoords, corners, faces, face_material = [], [], [], {}, [], []
    vertices, uv, vertex_source = [], [], []
    mtllibs, material = [], ""
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                positions.append([float(x) for x in parts[1:4]])
                colours.append([float(x) for x in parts[4:7]] if len(parts) >= 7 else None)
            elif parts[0] == "vt":
                texcoords.append([float(x) for x in parts[1:3]])
            elif parts[0] == "mtllib":
                mtllibs.append(" ".join(parts[1:]))
            elif parts[0] == "usemtl":
                material = " ".join(parts[1:])
            elif parts[0] == "f":
                ids = []
                for corner in parts[1:]:
                    fields = corner.split("/")
                    vi = _obj_index(fields[0], len(positions), "vertex")
                    has_t = len(fields) > 1 and fields[1]
                    ti = _obj_index(fields[1], len(texcoords), "texture coordinate") if has_t else -1
                    if (vi, ti) not in corners:
                        corners[(vi, ti)] = len(vertices)
                        vertices.append(positions[vi])
                        vertex_source.append(vi)
                        uv.append(texcoords[ti] if ti >= 0 else [0.0, 0.0])
                    ids.append(corners[(vi, ti)])
                fan = [(ids[0], ids[k], ids[k + 1]) for k in range(1, len(ids) - 1)]
                faces += fan
                face_material += [material] * len(fan)
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}:{number}: cannot read {line.strip()[:60]!r} ({err})") from None
    if not faces:
        raise ValueError(f"{path}: no faces found")
    materials: dict[str, dict] = {}
    for lib in mtllibs:
        if (path.parent / lib).is_file():
            materials.update(_read_mtl(path.parent / lib))
    texture = next((m["map_Kd"] for m in materials.values() if m["map_Kd"]), "")
    faces_arr = np.array(faces, np.int64)
    face_rgb = None
    if not texture and any(m["Kd"] is not None for m in materials.values()):
        grey = [0.7, 0.7, 0.7]
        kd = [(materials.get(name) or {}).get("Kd") or grey for name in face_material]
        face_rgb = np.clip(np.round(np.array(kd) * 255), 0, 255).astype(np.uint8)
    elif not texture and colours and all(c is not None for c in colours):
        per_vertex = np.array(colours)[np.array(vertex_source)]
        face_rgb = _face_colours(per_vertex, faces_arr)
    uv_arr = np.array(uv, float)
    uv_arr[:, 1] = 1.0 - uv_arr[:, 1]
    return MeshData(np.array(vertices, float), faces_arr, uv_arr if texcoords else None, texture, face_rgb)


def read_obj(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Wavefront OBJ: vertices, triangles (polygons fanned), per-vertex uv (t flipped), texture from the .mtl."""
    mesh = parse_obj(path)
    return mesh.vertices, mesh.faces, mesh.uv, mesh.texture


def _face_colours(vertex_rgb: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-face uint8 colour: the mean of its corners' colours (given in [0, 1] or [0, 255])."""
    rgb = np.asarray(vertex_rgb, float)
    if rgb.size and rgb.max() <= 1.0:
        rgb = rgb * 255.0
    return np.clip(np.round(rgb[faces].mean(axis=1)), 0, 255).astype(np.uint8)


_PLY_TYPES = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2",
              "int16": "i2", "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _ply_header(path: Path, data: bytes):
    """(format, [(element, count, [property fields])], texture file, byte offset of the body)."""
    if not data.startswith(b"ply"):
        raise ValueError(f"{path}: not a PLY file (it does not start with 'ply')")
    marker = data.find(b"end_header")
    if marker < 0:
        raise ValueError(f"{path}: no end_header line: the PLY header is broken or cut off")
    end = data.find(b"\n", marker)
    end = len(data) if end < 0 else end + 1
    fmt, elements, texture = "", [], ""
    for line in data[:end].decode("ascii", errors="replace").splitlines():
        parts = line.split()
        if parts[:1] == ["format"] and len(parts) >= 2:
            fmt = parts[1]
        elif parts[:2] == ["comment", "TextureFile"] and len(parts) >= 3:
            texture = str(path.parent / parts[2])
        elif parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"]:
            if not elements:
                raise ValueError(f"{path}: a property before any element in the header")
            props = parts[1:]
            for kind in (props[1:3] if props[0] == "list" else props[:1]):
                if kind not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown PLY property type {kind!r}")
            elements[-1][2].append(props)
    if fmt not in ("ascii", "binary_little_endian"):
        raise ValueError(f"{path}: PLY format {fmt or '(none)'} is not supported (use ascii or binary_little_endian)")
    return fmt, elements, texture, end


def _ply_binary_element(data: bytes, offset: int, count: int, props: list) -> tuple[dict, int]:
    """Columns of one binary element (lists as (count, k) arrays when every row has the same length)."""
    if all(p[0] != "list" for p in props):
        dtype = np.dtype([(p[-1], "<" + _PLY_TYPES[p[0]]) for p in props])
        block = np.frombuffer(data, dtype, count, offset)
        return {p[-1]: block[p[-1]] for p in props}, offset + dtype.itemsize * count
    # Lists: read the first row's lengths, assume them for all rows, check the counts (fast path).
    fields, pos = [], offset
    for p in props:
        if p[0] == "list":
            k = int(np.frombuffer(data, "<" + _PLY_TYPES[p[1]], 1, pos)[0])
            fields += [(p[-1] + "#n", "<" + _PLY_TYPES[p[1]]), (p[-1], "<" + _PLY_TYPES[p[2]], (k,))]
            pos += np.dtype(_PLY_TYPES[p[1]]).itemsize + k * np.dtype(_PLY_TYPES[p[2]]).itemsize
        else:
            fields.append((p[-1], "<" + _PLY_TYPES[p[0]]))
            pos += np.dtype(_PLY_TYPES[p[0]]).itemsize
    dtype = np.dtype(fields)
    if offset + dtype.itemsize * count <= len(data):
        block = np.frombuffer(data, dtype, count, offset)
        lists = [p[-1] for p in props if p[0] == "list"]
        if all(np.all(block[n + "#n"] == block[n].shape[1]) for n in lists):
            return {p[-1]: block[p[-1]] for p in props}, offset + dtype.itemsize * count
    rows: dict[str, list] = {p[-1]: [] for p in props}
    for _ in range(count):
        for p in props:
            if p[0] == "list":
                k = int(np.frombuffer(data, "<" + _PLY_TYPES[p[1]], 1, offset)[0])
                offset += np.dtype(_PLY_TYPES[p[1]]).itemsize
                values = np.frombuffer(data, "<" + _PLY_TYPES[p[2]], k, offset)
                offset += values.nbytes
                rows[p[-1]].append(values.tolist())
            else:
                rows[p[-1]].append(np.frombuffer(data, "<" + _PLY_TYPES[p[0]], 1, offset)[0])
                offset += np.dtype(_PLY_TYPES[p[0]]).itemsize
    return rows, offset


def _ply_ascii_element(tokens: list, pos: int, count: int, props: list) -> tuple[dict, int]:
    rows: dict[str, list] = {p[-1]: [] for p in props}
    for _ in range(count):
        for p in props:
            if p[0] == "list":
                k = int(tokens[pos])
                rows[p[-1]].append([float(t) for t in tokens[pos + 1:pos + 1 + k]])
                pos += 1 + k
            else:
                rows[p[-1]].append(float(tokens[pos]))
                pos += 1
    if pos > len(tokens):
        raise ValueError("the file ends before its last element")
    return rows, pos


def _triangles(polygons) -> tuple[np.ndarray, np.ndarray]:
    """Triangles fanned from polygons and, per triangle, the (polygon, corner a, b, c) it came from."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        k = polygons.shape[1]
        fan = [(0, i, i + 1) for i in range(1, k - 1)]
        tris = np.concatenate([polygons[:, list(f)] for f in fan]) if fan else np.zeros((0, 3))
        source = np.concatenate([np.stack([np.arange(len(polygons))] + [np.full(len(polygons), c) for c in f], 1)
                                 for f in fan]) if fan else np.zeros((0, 4))
        return tris.astype(np.int64), source.astype(np.int64)
    tris, source = [], []
    for n, row in enumerate(polygons):
        for i in range(1, len(row) - 1):
            tris.append((row[0], row[i], row[i + 1]))
            source.append((n, 0, i, i + 1))
    return np.array(tris, np.int64).reshape(-1, 3), np.array(source, np.int64).reshape(-1, 4)


def parse_ply(path) -> MeshData:
    """PLY (ascii or binary little-endian): x y z, per-vertex uv (s t / u v / texture_u texture_v) or
    per-corner ``texcoord`` lists, vertex colours (red green blue), polygons fanned into triangles.
    """
    path = Path(path)
    data = path.read_bytes()
    fmt, elements, texture, end = _ply_header(path, data)
    columns: dict[str, dict] = {}
    try:
        if fmt == "ascii":
            tokens, pos = data[end:].split(), 0
            for name, count, props in elements:
                columns[name], pos = _ply_ascii_element(tokens, pos, count, props)
        else:
            offset = end
            for name, count, props in elements:
                columns[name], offset = _ply_binary_element(data, offset, count, props)
    except (ValueError, IndexError) as err:
        raise ValueError(f"{path}: the PLY body does not match its header ({err})") from None
    vertex, face = columns.get("vertex", {}), columns.get("face", {})
    polygons = face.get("vertex_indices", face.get("vertex_index"))
    if polygons is None or not {"x", "y", "z"} <= set(vertex):
        raise ValueError(f"{path}: needs vertex x, y, z and faces (vertex_indices)")
    vertices = np.stack([np.asarray(vertex[c], float) for c in "xyz"], axis=1)
    faces, source = _triangles(polygons)
    uv = None
    for su, sv in (("s", "t"), ("u", "v"), ("texture_u", "texture_v")):
        if su in vertex and sv in vertex:
            uv = np.stack([np.asarray(vertex[su], float), 1.0 - np.asarray(vertex[sv], float)], axis=1)
            break
    rgb_names = next((n for n in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
                      if set(n) <= set(vertex)), None)
    face_rgb = None
    if rgb_names and not texture:
        rgb = np.stack([np.asarray(vertex[c], float) for c in rgb_names], axis=1)
        first = np.asarray(vertex[rgb_names[0]])
        if first.dtype.kind in "iu" or (first.size and first.max() > 1.0):  # uchar 0-255, else float 0-1
            rgb = rgb / 255.0
        face_rgb = _face_colours(rgb, faces) if len(faces) and faces.max() < len(vertices) else None
    corner_uv = face.get("texcoord")
    if corner_uv is not None and uv is None and len(faces):
        # One uv per polygon corner: every triangle gets vertices of its own.
        corner_uv = [np.asarray(row, float).reshape(-1, 2) for row in corner_uv]
        tri_uv = np.array([[corner_uv[n][a], corner_uv[n][b], corner_uv[n][c]] for n, a, b, c in source])
        if faces.max() >= len(vertices):
            raise ValueError(f"{path}: face indices out of range for {len(vertices)} vertices")
        vertices = vertices[faces].reshape(-1, 3)
        uv = tri_uv.reshape(-1, 2) * [1.0, -1.0] + [0.0, 1.0]
        faces = np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)
    return MeshData(vertices, faces, uv, texture, face_rgb)


def read_ply_any(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """PLY (ascii or binary little-endian): x y z (+ s t / u v / texture_u texture_v), triangle lists."""
    mesh = parse_ply(path)
    return mesh.vertices, mesh.faces, mesh.uv, mesh.texture


def bake_face_colours(vertices: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray,
                      max_texture_size: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured mesh that shows one flat colour per face (the renderer only draws textures).

    Colours are quantised (5 bits per channel, fewer when the palette would not fit in
    ``max_texture_size``) and each gets a block of texels, sorted so that neighbouring blocks are alike:
    a texture's mipmaps then blur a face's colour only into similar ones. Every face gets corners of
    its own (uv at its block's centre). Returns vertices, faces, uv, texture (RGB uint8).
    """
    for bits in (5, 4, 3, 2):
        step = 256 // (1 << bits)
        quantised = (face_rgb.astype(np.int64) // step) * step + step // 2
        palette, index = np.unique(quantised, axis=0, return_inverse=True)
        side = math.ceil(math.sqrt(len(palette)))
        if side <= max_texture_size:
            break
    block = max(1, min(4, max_texture_size // side))
    texture = np.zeros((side * block, side * block, 3), np.uint8)
    rows, cols = np.divmod(np.arange(len(palette)), side)
    for (r, c), colour in zip(zip(rows, cols), palette):
        texture[r * block:(r + 1) * block, c * block:(c + 1) * block] = colour
    size = side * block
    face_uv = np.stack([(cols[index.ravel()] + 0.5) * block / size, (rows[index.ravel()] + 0.5) * block / size], 1)
    new_vertices = vertices[faces].reshape(-1, 3)
    new_faces = np.arange(len(new_vertices), dtype=np.int64).reshape(-1, 3)
    return new_vertices, new_faces, np.repeat(face_uv, 3, axis=0), texture


def parse_mesh_file(mesh_path) -> MeshData:
    """Any supported mesh file (.obj, .ply, .msh); a malformed file raises one ValueError naming it."""
    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise FileNotFoundError(f"mesh file {mesh_path} does not exist")
    suffix = mesh_path.suffix.lower()
    parsers = {".msh": lambda p: MeshData(*read_msh(p)), ".obj": parse_obj, ".ply": parse_ply}
    if suffix not in parsers:
        raise ValueError(f"{mesh_path}: unsupported mesh format {suffix!r} (use .obj, .ply or .msh)")
    try:
        mesh = parsers[suffix](mesh_path)
    except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError) as err:
        message = str(err)
        if str(mesh_path) in message:
            raise ValueError(message) from None
        raise ValueError(f"{mesh_path}: not a readable {suffix[1:].upper()} mesh ({message})") from None
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ValueError(f"{mesh_path}: no faces found")
    if mesh.faces.max() >= len(mesh.vertices) or mesh.faces.min() < 0:
        raise ValueError(f"{mesh_path}: face indices out of range for {len(mesh.vertices)} vertices")
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError(f"{mesh_path}: {int((~np.isfinite(mesh.vertices)).any(axis=1).sum())} vertices are "
                         "NaN or infinite")
    return mesh


def has_area(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m,) bool: the faces with area (not repeated or collinear corners, relative to the mesh's size)."""
    extent = float(np.ptp(vertices, axis=0).max()) or 1.0
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return np.linalg.norm(np.cross(b - a, c - a), axis=1) > 1e-12 * extent ** 2


def _read_texture(texture_file: str, mesh_path: Path, max_texture_size: int) -> np.ndarray:
    bgr = cv2.imread(str(texture_file), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read texture {texture_file} (for {mesh_path})")
    texture = bgr[:, :, ::-1]
    longest = max(texture.shape[:2])
    if longest > max_texture_size:
        f = max_texture_size / longest
        texture = cv2.resize(texture, (max(1, round(texture.shape[1] * f)), max(1, round(texture.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(texture)


def load_mesh_model(mesh_path, texture_path: str = "", scale: float = 1.0, symmetry: str = "none",
                    max_texture_size: int = 1024, color=None) -> Model:
    """A model from a mesh file (``.obj``, ``.ply``, ``.msh``) and its texture image (PNG/JPEG).

    Colour, by priority: ``texture_path``, the texture the file names, the file's vertex or material
    colours (baked into a texture), else the flat ``color`` (default grey; ``params["colour_source"]``
    says which). Faces without area are dropped (``params["dropped_faces"]`` counts them).
    """
    mesh_path = Path(mesh_path)
    mesh = parse_mesh_file(mesh_path)
    keep = has_area(mesh.vertices, mesh.faces)
    faces, dropped = mesh.faces[keep], int((~keep).sum())
    if len(faces) == 0:
        raise ValueError(f"{mesh_path}: all {len(mesh.faces)} faces have zero area")
    vertices, uv = mesh.vertices, mesh.uv
    texture_file = texture_path or mesh.texture
    if texture_file:
        texture, source = _read_texture(texture_file, mesh_path, max_texture_size), "texture"
    elif mesh.face_rgb is not None:
        vertices, faces, uv, texture = bake_face_colours(vertices, faces, mesh.face_rgb[keep], max_texture_size)
        source = "colours"
    else:
        rgb = np.asarray(color if color else (0.7, 0.7, 0.7), float)
        texture, source = np.tile((rgb * 255).astype(np.uint8), (4, 4, 1)), "flat"
    if uv is None:
        uv = np.zeros((len(vertices), 2))
    params = {"type": "mesh", "mesh": str(mesh_path), "texture": str(texture_file), "scale": scale,
              "colour_source": source, "dropped_faces": dropped}
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
