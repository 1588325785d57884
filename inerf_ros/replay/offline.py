"""Offline replay: the bag's frames straight through PoseCNN, the initializer and the optimizer.

The three columns of seed 003's Table II, each an independent estimate per frame (no tracking, so
one frame's failure does not decide the next one's):

* ``mask``: start from the PoseCNN prior, rays sampled in PoseCNN's mask region (dilated);
* ``prior``: start from the same prior, rays sampled at random over the image;
* ``plain``: plain iNeRF: start from the ground truth perturbed by iNeRF's protocol (a rotation
  uniform in [-40, 40] degrees about a random axis and a shift uniform in [-0.2, 0.2] m per axis),
  random rays. Needs ground truth.

The optimizer and the initializer are exactly what the live nodes run (:mod:`inerf_ros.pipeline`
uses the same ``PoseOptimizer``); what the nodes add is the tracking policy and the transport.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from inerf_ros import frames, lie
from inerf_ros.optim.evaluate import perturb
from inerf_ros.optim.inerf import OptimizerConfig, PoseEstimate, PoseOptimizer
from inerf_ros.optim.localizer import LocalizerConfig
from inerf_ros.optim.sampling import SamplingConfig
from inerf_ros.pipeline import FrameInput, InerfPipeline

COLUMNS = {
    "mask": "PoseCNN prior + mask region",
    "prior": "PoseCNN prior only",
    "plain": "iNeRF from perturbed truth",
}
STRATEGY = {"mask": "mask_region", "prior": "random", "plain": "random"}


@dataclasses.dataclass
class FrameRecord:
    """One estimate (or the reason there is none) of one frame in one column."""

    column: str
    frame: int
    stamp_s: float
    status: str = "ok"
    """ok, or why there is no estimate: no prior, no camera_info, image rejected, error."""
    message: str = ""
    rotation_error_deg: float = float("nan")
    translation_error_m: float = float("nan")
    start_rotation_error_deg: float = float("nan")
    start_translation_error_m: float = float("nan")
    iterations: int = 0
    converged: bool = False
    final_loss: float = float("nan")
    optimizer_s: float = float("nan")
    detector_s: float = float("nan")
    """PoseCNN + initializer time of this frame (shared by the prior columns)."""
    latency_s: float = float("nan")
    """Everything from the decoded image to the estimate (detector + initializer + optimizer)."""
    detections: int = 0
    sampling: str = ""
    world_T_cam: list | None = None
    """Estimated optical camera in the world frame (metres), 4x4 as nested lists."""
    world_T_cam_gt: list | None = None
    error_history: list = dataclasses.field(default_factory=list)
    """[(rotation deg, translation m)] per iteration (when ground truth is known)."""

    @property
    def has_estimate(self) -> bool:
        """Whether this frame got an estimate (a pose in the world)."""
        return self.world_T_cam is not None


def errors(world_T_est: np.ndarray, world_T_gt: np.ndarray) -> tuple[float, float]:
    """(rotation deg, translation m) of an estimate against the truth, both metric, same frame."""
    rot, trans = lie.pose_error(torch.from_numpy(np.asarray(world_T_est, dtype=np.float64)),
                                torch.from_numpy(np.asarray(world_T_gt, dtype=np.float64)))
    return float(rot), float(trans)


class OfflineReplay:
    """Runs the chosen columns on frames of a :class:`~inerf_ros.replay.bag.CameraBag`.

    Args:
        model: the NeRF (``inerf_ros.nerf``), ``model.metadata.metres_per_unit`` its scale.
        detector: PoseCNN detector (``.detect(rgb, K)``), or None (then only ``plain`` can run).
        estimator: ``inerf_ros.initializer.CameraPriorEstimator`` for the object table of the scene.
        world_T_nerf: (4, 4) static transform, metres.
    """

    def __init__(self, model, detector, estimator, world_T_nerf: np.ndarray, optimizer: OptimizerConfig,
                 sampling: SamplingConfig, columns: list[str], device: str = "cpu", seed: int = 0,
                 overlay_scale: float = 0.25):
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; choose from {', '.join(COLUMNS)}")
        if detector is None and set(columns) & {"mask", "prior"}:
            raise ValueError("the mask and prior columns need a PoseCNN model")
        self.model = model
        self.detector = detector
        self.estimator = estimator
        self.world_T_nerf = np.asarray(world_T_nerf, dtype=np.float64)
        self.metres_per_unit = float(model.metadata.metres_per_unit)
        self.columns = list(columns)
        self.device = device
        self.overlay_scale = overlay_scale
        self._sampling = sampling
        self._optimizer = PoseOptimizer(model, optimizer, sampling, device=device)
        self._rng = np.random.default_rng(seed)

    def _to_world(self, nerf_T_optical: np.ndarray) -> np.ndarray:
        return self.world_T_nerf @ frames.nerf_to_metres(nerf_T_optical, self.metres_per_unit)

    def _to_nerf(self, world_T_cam: np.ndarray) -> np.ndarray:
        return frames.metres_to_nerf(np.linalg.inv(self.world_T_nerf) @ world_T_cam, self.metres_per_unit)

    def run_frame(self, frame) -> tuple[list[FrameRecord], np.ndarray | None]:
        """All columns on one frame; returns the records and the overlay of the first column (or None)."""
        records = [FrameRecord(column, frame.index, frame.stamp_s) for column in self.columns]
        gt = frame.world_T_cam_gt
        for record in records:
            record.world_T_cam_gt = None if gt is None else gt.tolist()
        if frame.problem:
            for record in records:
                record.status, record.message = frame.problem.split(":")[0], frame.problem
            return records, None
        prior, label_mask, detector_s, n_detections, prior_message = None, None, float("nan"), 0, ""
        if set(self.columns) & {"mask", "prior"}:
            started = time.perf_counter()
            result = self.detector.detect(frame.rgb, frame.intrinsics.K)
            fused = self.estimator.estimate(result.objects)
            detector_s = time.perf_counter() - started
            n_detections, label_mask = len(result.objects), result.label_mask
            prior = fused.nerf_T_cam if fused.ok else None
            prior_message = "" if fused.ok else fused.reason
        overlay = None
        for record in records:
            record.detector_s, record.detections = detector_s, n_detections
            if record.column == "plain":
                if gt is None:
                    record.status, record.message = "no ground truth", "plain iNeRF starts from the perturbed truth"
                    continue
                start = perturb(self._to_nerf(gt), "inerf", 1.0 / self.metres_per_unit, self._rng)
            elif prior is None:
                record.status, record.message = "no prior", prior_message
                continue
            else:
                start = prior
            self._optimizer.sampling = dataclasses.replace(self._sampling, strategy=STRATEGY[record.column])
            try:
                estimate = self._optimizer.estimate(frame.rgb, frame.intrinsics, start,
                                                    label_mask=label_mask if record.column == "mask" else None,
                                                    keep_history=gt is not None)
            except (ValueError, FloatingPointError) as error:
                record.status, record.message = "error", f"{type(error).__name__}: {error}"
                continue
            world_T_cam = self._to_world(estimate.nerf_T_optical)
            record.world_T_cam = world_T_cam.tolist()
            record.iterations, record.converged = int(estimate.iterations), bool(estimate.converged)
            record.final_loss, record.optimizer_s = float(estimate.final_loss), float(estimate.time_s)
            record.sampling, record.message = estimate.sampling_strategy, estimate.note
            shared = detector_s if record.column != "plain" else 0.0
            record.latency_s = shared + record.optimizer_s
            if gt is not None:
                record.rotation_error_deg, record.translation_error_m = errors(world_T_cam, gt)
                record.start_rotation_error_deg, record.start_translation_error_m = errors(self._to_world(start), gt)
                record.error_history = [errors(self._to_world(p), gt) for p in estimate.history]
            if overlay is None and record.column == self.columns[0] and self.overlay_scale > 0:
                overlay = render_overlay(self.model, frame.rgb, frame.intrinsics, estimate.nerf_T_optical,
                                         self.overlay_scale, self.device)
        return records, overlay


def render_overlay(model, rgb: np.ndarray, intrinsics, nerf_T_optical: np.ndarray, scale: float,
                   device: str) -> np.ndarray:
    """The observed image blended 50/50 with the NeRF rendered at the estimate (what inerf_node publishes)."""
    pipeline = InerfPipeline(model, device, OptimizerConfig(), SamplingConfig(), LocalizerConfig())
    estimate = PoseEstimate(nerf_T_optical=nerf_T_optical, iterations=0, final_loss=0.0, converged=True, time_s=0.0,
                            num_hypotheses=1, sampling_strategy="", covariance=np.zeros((6, 6)))
    return pipeline.overlay(FrameInput(rgb, intrinsics, 0.0), estimate, scale)
