"""Training data for PoseCNN from a rendered scene (``inerf-ros make-scene``), held in memory at the input size."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from inerf_ros.posecnn.model import scaled_K
from inerf_ros.scene.dataset import load_frames
from inerf_ros.scene import mesh_folder


@dataclasses.dataclass
class SceneTensors:
    """A split resized to the network's input size; poses in the ROS optical camera frame (metres).

    ``objects`` rows: (frame, instance_id, class_id, u, v, z, visible pixels, x0, y0, x1, y1) with
    (u, v) the projected centre and the box around the visible pixels, both in input pixels.
    """

    rgb: Tensor        # (N, H, W, 3) uint8
    label: Tensor      # (N, H, W) uint8
    instance: Tensor   # (N, H, W) uint8
    K: Tensor          # (N, 3, 3) float64, at the input size
    objects: Tensor    # (M, 11) float64
    rotations: Tensor  # (M, 3, 3) float64 cam_R_obj


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points uniformly on a triangle mesh (area-weighted), float64 (count, 3), from ``seed``."""
    return mesh_folder.sample_surface(np.asarray(vertices, dtype=np.float64), faces, count,
                                      np.random.default_rng(seed))


def load_split(scene_dir, split: str, width: int, height: int, max_frames: int = 0,
               min_pixels: int = 20, progress: bool = True) -> SceneTensors:
    """Read ``split`` of ``scene_dir`` and resize it to ``width`` x ``height``."""
    def frames():
        for n, frame in enumerate(tqdm(load_frames(scene_dir, split), desc=f"reading {split}", unit="frame",
                                       disable=not progress)):
            if max_frames and n >= max_frames:
                break
            yield (frame.rgb, frame.label, frame.instance, frame.intrinsics.K,
                   [(obj.instance_id, obj.class_id, obj.cam_T_obj) for obj in frame.objects])

    return frames_to_tensors(frames(), width, height, min_pixels, f"{scene_dir}/{split}")


def frames_to_tensors(frames, width: int, height: int, min_pixels: int = 20, source: str = "") -> SceneTensors:
    """Resize frames ``(rgb, label, instance, K, [(instance_id, class_id, cam_T_obj)])`` to the input size and
    gather the visible objects (at least ``min_pixels`` pixels after resizing, in front of the camera).
    """
    rgbs, labels, instances, Ks, objects, rotations = [], [], [], [], [], []
    for n, (rgb, label, instance, K0, frame_objects) in enumerate(frames):
        h0, w0 = rgb.shape[:2]
        K = scaled_K(K0, w0, h0, width, height)
        rgbs.append(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
        instance = cv2.resize(instance, (width, height), interpolation=cv2.INTER_NEAREST)
        labels.append(label)
        instances.append(instance)
        Ks.append(K)
        for instance_id, class_id, cam_T_obj in frame_objects:
            mask = instance == instance_id
            count = int(mask.sum())
            if count < min_pixels:
                continue
            ys, xs = np.nonzero(mask)
            t = cam_T_obj[:3, 3]
            if t[2] <= 0:
                continue
            uv = K @ t
            objects.append([n, instance_id, class_id, uv[0] / uv[2], uv[1] / uv[2], t[2], count,
                            xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5])
            rotations.append(cam_T_obj[:3, :3])
    if not rgbs:
        raise ValueError(f"{source}: no frames")
    return SceneTensors(
        rgb=torch.from_numpy(np.stack(rgbs)), label=torch.from_numpy(np.stack(labels)),
        instance=torch.from_numpy(np.stack(instances)), K=torch.from_numpy(np.stack(Ks)),
        objects=torch.tensor(objects, dtype=torch.float64).reshape(-1, 11),
        rotations=torch.tensor(np.array(rotations), dtype=torch.float64).reshape(-1, 3, 3))


def vertex_targets(data: SceneTensors, frames: Tensor, reference_focal: float) -> Tensor:
    """(B, 3, H, W) float targets: unit direction to the object centre and normalised depth, per pixel
    (zero where no object); ``frames`` (B,) indices into ``data``.
    """
    instance = data.instance[frames].long()
    b, h, w = instance.shape
    table = torch.zeros(b, 256, 3, dtype=torch.float32)
    rows = data.objects
    for k, frame in enumerate(frames.tolist()):
        sel = rows[rows[:, 0] == frame]
        if sel.numel() == 0:
            continue
        ids = sel[:, 1].long()
        fy = float(data.K[frame, 1, 1])
        table[k, ids, 0] = sel[:, 3].float()
        table[k, ids, 1] = sel[:, 4].float()
        table[k, ids, 2] = (sel[:, 5] * reference_focal / fy).float()
    centre = torch.gather(table, 1, instance.view(b, -1, 1).expand(b, h * w, 3)).view(b, h, w, 3)
    vs, us = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    d = torch.stack([centre[..., 0] - us, centre[..., 1] - vs], dim=1)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return torch.cat([d, centre[..., 2][:, None]], dim=1) * (instance > 0)[:, None]


def augment(rgb: Tensor, generator: torch.Generator) -> Tensor:
    """Photometric augmentation of (B, H, W, 3) uint8 -> float (B, H, W, 3) in [0, 255]: brightness,
    contrast, saturation, per-channel gain, Gaussian noise. Geometry (and so K) is left untouched.
    """
    x = rgb.float()
    b = x.shape[0]

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    x = x * uniform(0.7, 1.3, 1, 1, 1) * uniform(0.9, 1.1, 1, 1, 3)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.7, 1.3, 1, 1, 1) + mean
    grey = x.mean(dim=3, keepdim=True)
    x = (x - grey) * uniform(0.6, 1.4, 1, 1, 1) + grey
    x = x + torch.randn(x.shape, generator=generator) * uniform(0.0, 6.0, 1, 1, 1)
    return x.clamp(0, 255)


def jitter_boxes(boxes: Tensor, generator: torch.Generator, amount: float = 0.1) -> Tensor:
    """Shift and scale (R, 4) boxes by up to ``amount`` of their size (training RoIs)."""
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    noise = (torch.rand(boxes.shape[0], 4, generator=generator, dtype=boxes.dtype) * 2 - 1) * amount
    return boxes + noise * size.repeat(1, 2)


def rotation_error_deg(r_est: np.ndarray, r_gt: np.ndarray, symmetry: str) -> float:
    """Geodesic rotation error; for ``continuous_z`` symmetry only the z axes are compared."""
    if symmetry == "continuous_z":
        cos = float(np.clip(np.dot(r_est[:, 2], r_gt[:, 2]), -1.0, 1.0))
        return math.degrees(math.acos(cos))
    relative = r_est.T @ r_gt
    return math.degrees(math.acos(float(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))))
