"""A time-stamped transform tree with tf2's semantics, in numpy and without ROS.

``TfTree`` stores, per child frame, the samples ``parent_T_child(t)`` that ``/tf`` and ``/tf_static``
carry, and answers ``lookup(target, source, t) -> target_T_source`` the way tf2's ``BufferCore`` does:

* each sample names its parent, so a frame may change parent over time; at time ``t`` the parent is
  that of the older of the two samples around ``t``, and two samples with different parents are not
  interpolated (the older one is used), exactly as tf2's ``TimeCache::getData``;
* between two samples the rotation is SLERPed and the translation linearly interpolated; a stamp
  outside the stored span raises :class:`ExtrapolationError` (past or future) unless it lies within
  ``extrapolation_tolerance_s`` of the span (then the nearest sample is held, never extrapolated;
  the default 0 is tf2's behaviour);
* ``stamp_s`` 0 or None asks for the latest common time of the links involved (tf2's
  ``getLatestCommonTime``: the oldest of the newest samples, static links ignored);
* a static transform is valid at every time; dynamic history older than ``cache_time_s`` behind
  the newest sample of its frame is dropped (tf2's default is 10 s), which bounds memory;
* a sample older than the newest of its frame by more than ``time_jump_back_s`` (a bag loop, a
  simulation reset) clears every dynamic history: it is counted in ``time_jumps`` and reported to
  ``on_time_jump`` so that a node can log it and reset what it tracks;
* every parent a frame ever had is recorded (:meth:`TfTree.parents_seen`,
  :meth:`TfTree.multi_parent_frames`), so a replay can check that nobody gave a frame a second parent.

Errors derive from ``LookupError`` and mirror tf2's: :class:`FrameNotFoundError` (tf2's
LookupException), :class:`ConnectivityError`, :class:`ExtrapolationError` (with
:class:`FutureExtrapolationError` / :class:`PastExtrapolationError`). Non-finite or non-rigid
transforms raise ``ValueError`` at insertion: a NaN joint state must never reach a lookup.

Stamps are float seconds (float64 resolves ~0.2 us at wall-clock magnitudes: ample for
interpolation). The class is not thread-safe; ``inerf_ros.ros.tf`` wraps it in a lock.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

# tf2 rejects a quaternion whose squared norm is further than this from 1 (TF_DENORMALIZED_QUATERNION).
_QUAT_NORM_TOLERANCE = 1e-5
# A rotation matrix counts as rigid when R^T R is this close to I (float32 poses pass, shears do not).
_ORTHONORMAL_TOLERANCE = 1e-5
# tf2's MAX_GRAPH_DEPTH: a longer walk means a cycle in the graph.
_MAX_GRAPH_DEPTH = 1000


class TransformError(LookupError):
    """Base of every lookup failure (tf2's TransformException)."""


class FrameNotFoundError(TransformError):
    """A frame that no transform ever named (tf2's LookupException)."""


class ConnectivityError(TransformError):
    """Both frames exist but no chain joins them (tf2's ConnectivityException)."""


class ExtrapolationError(TransformError):
    """The chain exists but a link has no data around the requested time (tf2's ExtrapolationException)."""


class FutureExtrapolationError(ExtrapolationError):
    """The requested time is newer than a link's newest sample."""


class PastExtrapolationError(ExtrapolationError):
    """The requested time is older than a link's oldest sample."""


@dataclass(frozen=True)
class TimeJump:
    """A dynamic sample of ``frame`` at ``stamp_s`` arrived although ``newest_s`` was already stored."""

    frame: str
    stamp_s: float
    newest_s: float


# ---------------------------------------------------------------------------------------------
# Small numpy helpers (a 4-vector quaternion is (x, y, z, w), as geometry_msgs)


def matrix_to_quat(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a 3x3 rotation, w >= 0 (Shepperd's method, stable everywhere)."""
    m = rotation
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    quat = np.array(q, dtype=np.float64)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """3x3 rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = quat
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def slerp(q0: np.ndarray, q1: np.ndarray, ratio: float) -> np.ndarray:
    """Spherical interpolation from ``q0`` (ratio 0) to ``q1`` (ratio 1) along the shorter arc."""
    dot = float(q0 @ q1)
    if dot < 0:  # q and -q are the same rotation; take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: sin(theta) ~ 0, a normalised lerp is exact to 1e-9
        q = q0 + ratio * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    return (math.sin((1 - ratio) * theta) * q0 + math.sin(ratio * theta) * q1) / sin_theta


def _pose(quat: np.ndarray, translation: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(quat)
    out[:3, 3] = translation
    return out


def invert_transform(a_T_b: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 (transpose the rotation: exact and cheaper than a general inverse)."""
    out = np.eye(4)
    rotation_t = a_T_b[:3, :3].T
    out[:3, :3] = rotation_t
    out[:3, 3] = -rotation_t @ a_T_b[:3, 3]
    return out


def check_rigid(parent_T_child, name: str = "transform") -> np.ndarray:
    """``parent_T_child`` as a float64 4x4 after checking it is finite and rigid; ``ValueError`` otherwise."""
    matrix = np.asarray(parent_T_child, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values: {matrix.tolist()}")
    rotation = matrix[:3, :3]
    if (np.abs(rotation.T @ rotation - np.eye(3)).max() > _ORTHONORMAL_TOLERANCE
            or np.linalg.det(rotation) <= 0 or np.abs(matrix[3] - [0, 0, 0, 1]).max() > 1e-9):
        raise ValueError(f"{name} is not a rigid transform (rotation not orthonormal with det +1, or "
                         f"last row not [0, 0, 0, 1]): {matrix.tolist()}")
    return matrix


def _check_quat_translation(quat, translation, name: str) -> tuple[np.ndarray, np.ndarray]:
    # Plain floats, not numpy, for the checks: this runs for every /tf transform (thousands a second).
    qx, qy, qz, qw = (float(v) for v in quat)
    tx, ty, tz = (float(v) for v in translation)
    if not all(math.isfinite(v) for v in (qx, qy, qz, qw, tx, ty, tz)):
        raise ValueError(f"{name} contains NaN or infinite values: quaternion={[qx, qy, qz, qw]}, "
                         f"translation={[tx, ty, tz]}")
    norm_sq = qx * qx + qy * qy + qz * qz + qw * qw
    if abs(norm_sq - 1.0) > _QUAT_NORM_TOLERANCE:
        raise ValueError(f"{name} has a quaternion of norm {math.sqrt(norm_sq):.9f}, not 1: {[qx, qy, qz, qw]}")
    norm = math.sqrt(norm_sq)
    return np.array((qx / norm, qy / norm, qz / norm, qw / norm)), np.array((tx, ty, tz))


# ---------------------------------------------------------------------------------------------


class _FrameCache:
    """The samples of one child frame: sorted stamps with parallel parents, quaternions, translations."""

    __slots__ = ("static", "stamps", "parents", "quats", "translations", "authority")

    def __init__(self, static: bool):
        self.static = static
        self.stamps: list[float] = []
        self.parents: list[str] = []
        self.quats: list[np.ndarray] = []
        self.translations: list[np.ndarray] = []
        self.authority = ""

    def clear(self) -> None:
        self.stamps.clear()
        self.parents.clear()
        self.quats.clear()
        self.translations.clear()

    def insert(self, stamp_s: float, parent: str, quat: np.ndarray, translation: np.ndarray) -> None:
        if self.static:  # one sample, valid at all times
            self.stamps[:] = [stamp_s]
            self.parents[:] = [parent]
            self.quats[:] = [quat]
            self.translations[:] = [translation]
            return
        index = bisect.bisect_right(self.stamps, stamp_s)
        if index > 0 and self.stamps[index - 1] == stamp_s:  # same stamp again: the newer message wins
            index -= 1
            self.parents[index], self.quats[index], self.translations[index] = parent, quat, translation
            return
        self.stamps.insert(index, stamp_s)
        self.parents.insert(index, parent)
        self.quats.insert(index, quat)
        self.translations.insert(index, translation)

    def prune(self, cache_time_s: float) -> None:
        if self.static or not self.stamps or self.stamps[0] >= self.stamps[-1] - cache_time_s:
            return
        keep_from = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_time_s)
        if keep_from:
            del self.stamps[:keep_from], self.parents[:keep_from], self.quats[:keep_from]
            del self.translations[:keep_from]

    def latest(self) -> tuple[float, str] | None:
        """(newest stamp, its parent); the stamp is 0 for a static frame, as tf2's StaticCache."""
        if not self.stamps:
            return None
        return (0.0 if self.static else self.stamps[-1]), self.parents[-1]

    def sample(self, stamp_s: float, tolerance_s: float, child: str) -> tuple[str, np.ndarray]:
        """(parent, parent_T_child) at ``stamp_s`` (0: the newest); raises ExtrapolationError."""
        stamps = self.stamps
        if not stamps:
            raise ExtrapolationError(f"no data for frame [{child}] (its history was cleared or never filled)")
        if self.static or stamp_s == 0.0:
            return self.parents[-1], _pose(self.quats[-1], self.translations[-1])
        oldest, newest = stamps[0], stamps[-1]
        if stamp_s > newest:
            if stamp_s - newest > tolerance_s:
                raise FutureExtrapolationError(
                    f"Lookup would require extrapolation into the future. Requested time {stamp_s:.9f}"
                    f" but the latest data is at time {newest:.9f}, for frame [{child}]")
            return self.parents[-1], _pose(self.quats[-1], self.translations[-1])
        if stamp_s < oldest:
            if oldest - stamp_s > tolerance_s:
                raise PastExtrapolationError(
                    f"Lookup would require extrapolation into the past. Requested time {stamp_s:.9f}"
                    f" but the earliest data is at time {oldest:.9f}, for frame [{child}]")
            return self.parents[0], _pose(self.quats[0], self.translations[0])
        index = bisect.bisect_left(stamps, stamp_s)
        if stamps[index] == stamp_s:
            return self.parents[index], _pose(self.quats[index], self.translations[index])
        older, newer = index - 1, index
        if self.parents[older] != self.parents[newer]:  # tf2: no interpolation across a parent change
            return self.parents[older], _pose(self.quats[older], self.translations[older])
        ratio = (stamp_s - stamps[older]) / (stamps[newer] - stamps[older])
        quat = slerp(self.quats[older], self.quats[newer], ratio)
        translation = self.translations[older] + ratio * (self.translations[newer] - self.translations[older])
        return self.parents[older], _pose(quat, translation)


class TfTree:
    """Transforms between frames over time, with tf2's lookup semantics (see the module docstring)."""

    def __init__(self, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.0,
                 time_jump_back_s: float = 1.0, on_time_jump: Callable[[TimeJump], None] | None = None):
        if not (cache_time_s > 0 and extrapolation_tolerance_s >= 0 and time_jump_back_s > 0):
            raise ValueError(f"need cache_time_s > 0, extrapolation_tolerance_s >= 0, time_jump_back_s > 0; got "
                             f"{cache_time_s}, {extrapolation_tolerance_s}, {time_jump_back_s}")
        self.cache_time_s = float(cache_time_s)
        self.extrapolation_tolerance_s = float(extrapolation_tolerance_s)
        self.time_jump_back_s = float(time_jump_back_s)
        self.on_time_jump = on_time_jump
        self.time_jumps = 0
        self._caches: dict[str, _FrameCache] = {}
        self._known: set[str] = set()
        self._parents_seen: dict[str, set[str]] = {}

    # -- insertion -------------------------------------------------------------------------------

    def set_transform(self, parent: str, child: str, stamp_s: float, parent_T_child, static: bool = False,
                      authority: str = "") -> None:
        """Store ``parent_T_child`` (4x4, maps child points into ``parent``) at ``stamp_s``."""
        matrix = check_rigid(parent_T_child, f"transform {parent} -> {child}")
        self.set_transform_quat(parent, child, stamp_s, matrix[:3, 3].copy(), matrix_to_quat(matrix[:3, :3]),
                                static=static, authority=authority)

    def set_transform_quat(self, parent: str, child: str, stamp_s: float, translation, quat_xyzw,
                           static: bool = False, authority: str = "") -> None:
        """As :meth:`set_transform` from a translation (x, y, z) and a unit quaternion (x, y, z, w)."""
        quat, translation = _check_quat_translation(quat_xyzw, translation, f"transform {parent} -> {child}")
        stamp_s = float(stamp_s)
        for role, frame in (("parent", parent), ("child", child)):
            if not frame:
                raise ValueError(f"transform {parent!r} -> {child!r}: empty {role} frame id")
            if frame.startswith("/"):
                raise ValueError(f"transform {parent} -> {child}: frame ids cannot start with '/' (tf2 rule)")
        if parent == child:
            raise ValueError(f"transform {parent} -> {child}: a frame cannot be its own parent")
        if not math.isfinite(stamp_s) or stamp_s < 0:
            raise ValueError(f"transform {parent} -> {child}: invalid stamp {stamp_s}")
        cache = self._caches.get(child)
        if cache is None or cache.static != static:  # a frame switching kind starts afresh, as in tf2
            cache = self._caches[child] = _FrameCache(static)
        elif not static and cache.stamps and stamp_s < cache.stamps[-1] - self.time_jump_back_s:
            jump = TimeJump(child, stamp_s, cache.stamps[-1])
            self.clear_dynamic()
            self.time_jumps += 1
            if self.on_time_jump is not None:
                self.on_time_jump(jump)
        cache.insert(stamp_s, parent, quat, translation)
        cache.authority = authority
        cache.prune(self.cache_time_s)
        self._known.update((parent, child))
        self._parents_seen.setdefault(child, set()).add(parent)

    def clear_dynamic(self) -> None:
        """Forget every dynamic sample (static transforms and the parent record stay)."""
        for cache in self._caches.values():
            if not cache.static:
                cache.clear()

    def clear(self) -> None:
        """Forget every sample, static ones included (tf2's ``clear``); the parent record stays."""
        for cache in self._caches.values():
            cache.clear()

    # -- introspection ---------------------------------------------------------------------------

    def frames(self) -> set[str]:
        """Every frame ever named as a parent or a child."""
        return set(self._known)

    def parents_seen(self, child: str) -> set[str]:
        """Every parent ``child`` ever had (empty for a root or an unknown frame)."""
        return set(self._parents_seen.get(child, ()))

    def multi_parent_frames(self) -> set[str]:
        """Every frame that ever had two different parents (a broken tree at some point)."""
        return {child for child, parents in self._parents_seen.items() if len(parents) > 1}

    def parent(self, child: str, stamp_s: float | None = None) -> str | None:
        """``child``'s parent at ``stamp_s`` (None/0: the newest), or None for a root or when no data."""
        cache = self._caches.get(child)
        if cache is None or not cache.stamps:
            return None
        try:
            return cache.sample(float(stamp_s or 0.0), self.extrapolation_tolerance_s, child)[0]
        except ExtrapolationError:
            return None

    def authority(self, child: str) -> str:
        """Who published the newest sample of ``child`` (its tf2 authority)."""
        cache = self._caches.get(child)
        return cache.authority if cache is not None else ""

    # -- lookup ----------------------------------------------------------------------------------

    def lookup(self, target: str, source: str, stamp_s: float | None = None) -> np.ndarray:
        """``target_T_source`` (4x4) at ``stamp_s``; None or 0 is the latest common time."""
        return self.lookup_stamped(target, source, stamp_s)[0]

    def can_lookup(self, target: str, source: str, stamp_s: float | None = None) -> tuple[bool, str]:
        """(whether :meth:`lookup` would succeed, the reason when not)."""
        try:
            self.lookup_stamped(target, source, stamp_s)
        except TransformError as error:
            return False, str(error)
        return True, ""

    def lookup_stamped(self, target: str, source: str, stamp_s: float | None = None) -> tuple[np.ndarray, float]:
        """(``target_T_source``, the time it holds at): the latest common time when ``stamp_s`` is None/0."""
        for role, frame in (("target_frame", target), ("source_frame", source)):
            if frame not in self._known:
                raise FrameNotFoundError(f'"{frame}" passed to lookup argument {role} does not exist')
        stamp_s = 0.0 if stamp_s is None else float(stamp_s)
        if not math.isfinite(stamp_s) or stamp_s < 0:
            raise ValueError(f"lookup {target} <- {source}: invalid stamp {stamp_s}")
        if stamp_s == 0.0:
            stamp_s = self.latest_common_time(target, source)
        return self._walk(target, source, stamp_s), stamp_s

    def latest_common_time(self, target: str, source: str) -> float:
        """tf2's ``getLatestCommonTime``: the oldest newest-sample over the links joining the frames (0: static)."""
        for role, frame in (("target_frame", target), ("source_frame", source)):
            if frame not in self._known:
                raise FrameNotFoundError(f'"{frame}" passed to lookup argument {role} does not exist')
        if source == target:
            cache = self._caches.get(source)
            latest = cache.latest() if cache is not None else None
            return latest[0] if latest is not None else 0.0
        source_links: list[tuple[float, str]] = []  # (newest stamp, parent) from source upward
        common = math.inf
        frame = source
        for _ in range(_MAX_GRAPH_DEPTH):
            cache = self._caches.get(frame)
            latest = cache.latest() if cache is not None else None
            if latest is None:
                break
            if latest[0] != 0.0:
                common = min(common, latest[0])
            source_links.append(latest)
            frame = latest[1]
            if frame == target:
                return 0.0 if common == math.inf else common
        else:
            raise ConnectivityError(f"the chain above [{source}] is longer than {_MAX_GRAPH_DEPTH}: a loop")
        common = math.inf
        common_parent = None
        frame = target
        for _ in range(_MAX_GRAPH_DEPTH):
            cache = self._caches.get(frame)
            latest = cache.latest() if cache is not None else None
            if latest is None:
                break
            if latest[0] != 0.0:
                common = min(common, latest[0])
            if any(parent == latest[1] for _, parent in source_links):
                common_parent = latest[1]
                break
            frame = latest[1]
            if frame == source:
                return 0.0 if common == math.inf else common
        else:
            raise ConnectivityError(f"the chain above [{target}] is longer than {_MAX_GRAPH_DEPTH}: a loop")
        if common_parent is None:
            raise ConnectivityError(self._connectivity_message(target, source))
        for newest, parent in source_links:
            if newest != 0.0:
                common = min(common, newest)
            if parent == common_parent:
                break
        return 0.0 if common == math.inf else common

    def _connectivity_message(self, target: str, source: str) -> str:
        return (f"Could not find a connection between '{target}' and '{source}' because they are not part of "
                f"the same tree. Tf has two or more unconnected trees.")

    def _walk(self, target: str, source: str, stamp_s: float) -> np.ndarray:
        """tf2's ``walkToTopParent``: source up to its top, target up to the same top, then combine."""
        if source == target:
            return np.eye(4)
        tolerance = self.extrapolation_tolerance_s
        top_T_source = np.eye(4)
        frame = top = source
        extrapolation: ExtrapolationError | None = None
        for _ in range(_MAX_GRAPH_DEPTH):
            cache = self._caches.get(frame)
            if cache is None:  # the root of a tree has no cache
                top = frame
                break
            try:
                parent, parent_T_frame = cache.sample(stamp_s, tolerance, frame)
            except ExtrapolationError as error:
                # Not fatal yet: the target's walk may still meet the source's chain below this link.
                extrapolation, top = error, frame
                break
            if frame == target:  # target is an ancestor of source
                return top_T_source
            top_T_source = parent_T_frame @ top_T_source
            top = frame = parent
        else:
            raise ConnectivityError(f"the chain above [{source}] is longer than {_MAX_GRAPH_DEPTH}: a loop")
        if frame == target:
            return top_T_source
        top_T_target = np.eye(4)
        frame = target
        for _ in range(_MAX_GRAPH_DEPTH):
            if frame == top:
                break
            cache = self._caches.get(frame)
            if cache is None:
                break
            try:
                parent, parent_T_frame = cache.sample(stamp_s, tolerance, frame)
            except ExtrapolationError as error:
                raise type(error)(f"{error}, when looking up transform from frame [{source}] to frame "
                                  f"[{target}]") from None
            if frame == source:  # source is an ancestor of target
                return invert_transform(top_T_target)
            top_T_target = parent_T_frame @ top_T_target
            frame = parent
        else:
            raise ConnectivityError(f"the chain above [{target}] is longer than {_MAX_GRAPH_DEPTH}: a loop")
        if frame != top:
            if extrapolation is not None:
                raise type(extrapolation)(f"{extrapolation}, when looking up transform from frame [{source}] to "
                                          f"frame [{target}]")
            raise ConnectivityError(self._connectivity_message(target, source))
        return invert_transform(top_T_target) @ top_T_source


# ---------------------------------------------------------------------------------------------
# Where a localizer may attach its frame to a robot's tree without breaking it


def tree_root(parents: dict[str, str], frame: str) -> str:
    """The top of ``frame``'s tree: its parent's parent's ... (``frame`` itself when it has none).

    ``parents`` maps a child frame to its parent, as the robot's publishers give them. A cycle in it
    (a tree that is already broken) raises ``ValueError`` naming the frames on it.
    """
    seen = [frame]
    while frame in parents:
        frame = parents[frame]
        if frame in seen:
            raise ValueError(f"TF has a loop: {' -> '.join(reversed(seen + [frame]))}")
        seen.append(frame)
        if len(seen) > _MAX_GRAPH_DEPTH:
            raise ValueError(f"the chain above [{seen[0]}] is longer than {_MAX_GRAPH_DEPTH}")
    return frame


@dataclass(frozen=True)
class Attachment:
    """Where a localizer's correction joins its fixed frame to a robot's tree, keeping one parent per frame.

    ``frame``: the robot-side frame of the correction edge; ``nerf_is_child``: the edge is published
    ``frame -> nerf`` (the fixed frame becomes a child of the robot's tree) instead of ``nerf -> frame``.
    """

    frame: str
    nerf_is_child: bool
    reason: str


def correction_attachment(parents: dict[str, str], base_frame: str, world_frame: str) -> Attachment:
    """Where the correction for ``base_frame`` may go, given the tree the robot already publishes.

    tf2 keeps a tree, so the edge must join two trees that are still apart: ``nerf -> base_frame``
    only while ``base_frame`` is a root. A UR or Franka URDF often already has ``world -> base_link``
    (a fixed "virtual joint"); then the correction goes to the robot tree's root instead (REP 105's
    ``map -> odom`` is the same idea). And when ``world_frame`` (the parent of ``nerf``'s static
    ``world -> nerf``) is itself in the robot's tree, ``nerf -> root`` would close a loop
    (``world -> nerf -> root -> ... -> world``): the edge is turned round to ``world_frame -> nerf``,
    so ``nerf`` hangs below the robot's own world frame.
    """
    root = tree_root(parents, base_frame)
    if world_frame and tree_root(parents, world_frame) == root:
        return Attachment(world_frame, True,
                          f"'{world_frame}' is in the robot's tree (root '{root}'): the correction is published "
                          f"as {world_frame} -> nerf, a static {world_frame} -> nerf would close a loop")
    if root != base_frame:
        return Attachment(root, False,
                          f"'{base_frame}' already has a parent ('{parents[base_frame]}'): the correction goes to "
                          f"the root of its tree, '{root}', so that no frame gets a second parent")
    return Attachment(base_frame, False, f"'{base_frame}' is the root of the robot's tree")
