"""Where a photo's pose search starts: the registered views nearest in appearance, and PnP on feature
matches (to one view lifted with the NeRF's depth, pooled over the matched views, or triangulated from
pairs of posed views). The matches also vouch for a final pose (:meth:`StartFinder.feature_support`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from inerf_ros import frames
from inerf_ros.optim import features
from inerf_ros.register.config import RegisterConfig
from inerf_ros.register.photos import thumbnail

START_KINDS = ("view", "pnp", "joint", "triangulated")


@dataclasses.dataclass
class Start:
    """A pose to start the photo's refinement from."""

    kind: str
    """view: a registered view's own pose; pnp: PnP on the matches to one view, lifted with the NeRF's
    depth; joint: PnP on the lifted matches of every matched view together; triangulated: PnP on tracks
    triangulated from pairs of posed views."""
    label: str
    """What the report shows, e.g. "view img_003.png" or "pnp joint (3 views, 40 inliers)"."""
    nerf_T_gl: np.ndarray
    """(4, 4) OpenGL camera-to-NeRF pose."""

    def __post_init__(self) -> None:
        if self.kind not in START_KINDS:
            raise ValueError(f"start kind {self.kind!r} is not one of {START_KINDS}")

    @property
    def is_pnp(self) -> bool:
        """Rests on matched features (any PnP kind)."""
        return self.kind != "view"

    @property
    def is_pooled(self) -> bool:
        """PnP on the matches of several views (joint or triangulated)."""
        return self.kind in ("joint", "triangulated")


class StartFinder:
    """The views to start from (the data's, then accepted photos: indices past ``len(data)``), their
    features and matches, and the starts they give a photo, at the working resolution.

    Args:
        model: a :class:`inerf_ros.nerf.model.NerfModel` (its depth lifts matches to 3-D).
        data: the posed images (:class:`inerf_ros.datasets.transforms.PosedImages`) at the working resolution.
        config: :class:`RegisterConfig`.
        match_image: index -> larger (H', W', 3) image of a data view for matching (None: the working size).
    """

    def __init__(self, model, data, config: RegisterConfig, match_image=None):
        self.model, self.data, self.config = model, data, config
        self.device = torch.device(config.device)
        self.intrinsics = data.intrinsics[0]
        images = data.images.numpy()
        self.descriptors = np.stack([thumbnail(im) for im in images])
        self._images_uint8 = (images * 255 + 0.5).astype(np.uint8)
        self._match_image = match_image
        # Approximate (FLANN): thousands of keypoints against thousands per pair.
        self._matcher = features.FeatureMatcher(config.matcher, exact=False, seed=config.seed)
        self._features: dict = {}
        self._view_pairs: dict = {}  # (i, j), i < j -> matches between the two views' keypoints
        self._photo_pairs: dict = {}  # view -> matches (photo keypoint, view keypoint) of the current photo
        self._added: list[tuple[str, np.ndarray]] = []  # accepted photos as views: (name, OpenGL pose)
        self._matches: list = []  # (3-D points, photo pixels) of the current photo's matches, for support

    # -- the views ------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        """How many posed views there are: the data's plus the photos accepted so far."""
        return len(self.data) + len(self._added)

    def view_name(self, index: int) -> str:
        """The file name of view ``index`` (a data view's, or an accepted photo's)."""
        if index < len(self.data):
            return Path(self.data.file_names[index]).name
        return self._added[index - len(self.data)][0]

    def view_pose(self, index: int) -> np.ndarray:
        """OpenGL camera-to-NeRF pose of view ``index`` (float64)."""
        if index < len(self.data):
            return self.data.nerf_T_cam[index].double().numpy()
        return self._added[index - len(self.data)][1]

    def add_view(self, name: str, image: np.ndarray, nerf_T_gl, match_image: np.ndarray | None = None) -> None:
        """An accepted photo becomes a view to start from: photos that share features only with it
        (a capture's far side, steep views) then get PnP starts too.
        """
        index = self.num_views
        self._added.append((name, np.asarray(nerf_T_gl, dtype=np.float64)))
        self.descriptors = np.concatenate([self.descriptors, thumbnail(image)[None]])
        self._features[index] = self.features(match_image if match_image is not None else
                                              (image * 255 + 0.5).astype(np.uint8))

    # -- appearance and features ----------------------------------------------------------------
    def neighbours(self, image: np.ndarray, exclude=()) -> list[int]:
        """The ``neighbours`` views nearest in appearance (thumbnail cosine similarity), nearest first."""
        scores = self.descriptors @ thumbnail(image)
        order = [int(i) for i in np.argsort(-scores) if int(i) not in set(exclude)]
        return order[: self.config.neighbours]

    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """SIFT keypoints (K, 2) in working-resolution pixels and descriptors of an image of any size."""
        return self._matcher.detect(image, scale=self.intrinsics.width / image.shape[1])

    def _view_features(self, index: int):
        if index not in self._features:
            image = self._match_image(index) if self._match_image else self._images_uint8[index]
            self._features[index] = self.features(image)
        return self._features[index]

    def matched_views(self, image_features, exclude=(), count: int | None = None) -> list[int]:
        """The ``count`` (default ``neighbours``) registered views with the most feature matches to the
        photo, most first; the matches are kept for the PnP starts and the triangulation.
        """
        excluded = set(exclude)
        self._photo_pairs = {i: self._matcher.match(image_features[1], self._view_features(i)[1])
                             for i in range(self.num_views) if i not in excluded}
        ranked = sorted((i for i, pairs in self._photo_pairs.items() if pairs),
                        key=lambda i: -len(self._photo_pairs[i]))
        return ranked[: count or self.config.neighbours]

    def _optical_T_nerf(self, index: int) -> np.ndarray:
        return np.linalg.inv(frames.opengl_to_optical(self.view_pose(index)))

    def _between_views(self, a: int, b: int) -> dict[int, int]:
        """Keypoint of view ``a`` -> matching keypoint of view ``b`` (ratio test; cached per pair)."""
        key = (min(a, b), max(a, b))
        if key not in self._view_pairs:
            self._view_pairs[key] = self._matcher.match(self._view_features(key[0])[1],
                                                        self._view_features(key[1])[1])
        pairs = self._view_pairs[key]
        return dict(pairs) if a == key[0] else {m_b: m_a for m_a, m_b in pairs}

    @property
    def pixel_tolerance(self) -> float:
        """Reprojection tolerance of a feature match, working-resolution pixels (2 px at 270 wide)."""
        return features.pixel_tolerance(self.intrinsics)

    # -- the starts -----------------------------------------------------------------------------
    def find_starts(self, image: np.ndarray, exclude=(), match_image: np.ndarray | None = None
                    ) -> tuple[list[Start], list[str]]:
        """Every start for a (H, W, 3) float photo at the working resolution, and why PnP starts failed.

        ``exclude``: views not to start from; ``match_image``: the same photo larger (more SIFT matches).
        Resets the photo's matches, which :meth:`feature_support` then judges poses by.
        """
        config = self.config
        self._matches = []
        self._photo_pairs = {}
        starts: list[Start] = []
        notes: list[str] = []
        image_features = self.features(image if match_image is None else match_image) if config.pnp_starts else None
        by_look = self.neighbours(image, exclude)
        ranked = self.matched_views(image_features, exclude, max(config.neighbours, config.triangulate_views)) \
            if config.pnp_starts else []
        by_matches = ranked[: config.neighbours]
        for index in dict.fromkeys(by_look + by_matches):
            starts.append(Start("view", f"view {self.view_name(index)}", self.view_pose(index)))
        for index in by_matches:
            view = self.view_name(index)
            pose, note = self.pnp_start(image_features, index)
            if pose is not None:
                starts.append(Start("pnp", f"pnp {view}", pose))
            else:
                notes.append(f"pnp {view}: {note}")
        if config.pnp_starts and config.triangulate_views >= 2:
            triangulated = self.triangulated_start(image_features, ranked[: config.triangulate_views])
            if triangulated is not None:
                starts.append(triangulated)
            else:
                notes.append("pnp triangulated: no pose from the tracks")
        joint = self.joint_pnp_start()
        if joint is not None:
            starts.append(joint)
        return starts, notes

    def triangulated_start(self, image_features, views: list[int]) -> Start | None:
        """PnP on 3-D points triangulated from pairs of posed views, with no NeRF depth.

        A track is a photo keypoint matched to a keypoint of view a that view b also matches; the two
        posed views triangulate it (:func:`features.triangulate`; the widest-parallax pair wins). Where the
        photo shows a side the NeRF saw from few directions, its depth there, and so the lifted points of
        :meth:`pnp_start`, are poor while the photos' own geometry still holds. The points also join the
        matches that vouch for a pose (:meth:`feature_support`).
        """
        uv_photo = image_features[0]
        optical_T_nerf = {view: self._optical_T_nerf(view) for view in views}
        tracks, points, parallaxes = [], [], []
        for a in views:
            photo_to_a = dict(self._photo_pairs.get(a, []))
            for b in views:
                if a == b:
                    continue
                a_to_b = self._between_views(a, b)
                keys = np.array([k for k, m in photo_to_a.items() if m in a_to_b], dtype=np.int64)
                if len(keys) < 6:
                    continue
                uv_a = self._view_features(a)[0][[photo_to_a[k] for k in keys]]
                uv_b = self._view_features(b)[0][[a_to_b[photo_to_a[k]] for k in keys]]
                point, keep, parallax = features.triangulate(self.intrinsics, optical_T_nerf[a], optical_T_nerf[b],
                                                             uv_a, uv_b, self.pixel_tolerance)
                tracks.append(keys[keep])
                points.append(point[keep])
                parallaxes.append(parallax[keep])
        if not tracks or sum(len(t) for t in tracks) < 12:
            return None
        tracks, points, parallaxes = np.concatenate(tracks), np.concatenate(points), np.concatenate(parallaxes)
        order = np.argsort(-parallaxes, kind="stable")
        _, first = np.unique(tracks[order], return_index=True)  # each photo keypoint once, widest parallax
        chosen = order[first]
        points, uv = points[chosen], uv_photo[tracks[chosen]]
        self._matches.append((points, uv))
        result = features.solve_pnp(points, uv, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None
        return Start("triangulated",
                     f"pnp triangulated ({len(points)} tracks over {len(views)} views, {result.inliers} inliers)",
                     frames.optical_to_opengl(result.nerf_T_optical))

    def pnp_start(self, image_features, index: int) -> tuple[np.ndarray | None, str]:
        """OpenGL camera-to-NeRF pose from SIFT matches to view ``index`` lifted with the NeRF depth
        (None with the reason when there is none), and a note.
        """
        uv_all_new, des_new = image_features
        uv_all_ref, des_ref = self._view_features(index)
        if des_new is None or des_ref is None or len(des_new) < 8 or len(des_ref) < 8:
            return None, "too few features"
        pairs = self._photo_pairs.get(index)
        if pairs is None:
            pairs = self._matcher.match(des_new, des_ref)
        if len(pairs) < 12:
            return None, f"{len(pairs)} matches"
        new_index, ref_index = np.array(pairs).T
        pose = torch.from_numpy(self.view_pose(index)).float().to(self.device)
        points, keep = features.lift(self.model, self.intrinsics, pose, uv_all_ref[ref_index],
                                     n_samples=self.config.samples_per_ray or None)
        uv_new = uv_all_new[new_index][keep]
        self._matches.append((points, uv_new))
        result = features.solve_pnp(points, uv_new, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None, result.note
        return frames.optical_to_opengl(result.nerf_T_optical), f"{result.inliers} inliers"

    def joint_pnp_start(self) -> Start | None:
        """One PnP on the lifted matches to every matched view together (as the pose optimizer pools its
        alignment rounds): a steep view shares a few dozen matches with each of several views, and each
        view's own PnP is then noisy or fails.
        """
        if len(self._matches) < 2:
            return None
        points = np.concatenate([p for p, _ in self._matches])
        uv = np.concatenate([u for _, u in self._matches])
        result = features.solve_pnp(points, uv, self.intrinsics, self.pixel_tolerance, min_inliers=12)
        if result.nerf_T_optical is None:
            return None
        return Start("joint", f"pnp joint ({len(self._matches)} views, {result.inliers} inliers)",
                     frames.optical_to_opengl(result.nerf_T_optical))

    def can_check_geometry(self) -> bool:
        """The photo has enough matches to some view (``min_inliers``) for a geometric check of its pose."""
        config = self.config
        return config.pnp_starts and config.min_inliers > 0 and \
            any(len(points) >= config.min_inliers for points, _ in self._matches)

    def feature_support(self, nerf_T_gl: np.ndarray) -> int:
        """Matches (to one neighbour, or the triangulated tracks: the best of these groups) that the pose
        reprojects within 3x the PnP tolerance.

        Looser than PnP's: the photometric optimum of an imperfect NeRF sits a few pixels from the
        pose that fits the matches best (0.5 degree is 2.4 px at 270 px wide); a wrong basin is off by tens.
        """
        optical_T_nerf = np.linalg.inv(frames.opengl_to_optical(np.asarray(nerf_T_gl, dtype=np.float64)))
        best = 0
        for points, uv in self._matches:
            projected, front = features.project(optical_T_nerf, points, self.intrinsics)
            ok = front & (np.linalg.norm(projected - uv, axis=1) <= 3 * self.pixel_tolerance)
            best = max(best, int(ok.sum()))
        return best
