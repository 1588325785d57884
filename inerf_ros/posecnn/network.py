"""PoseCNN (Xiang et al. 2018): shared backbone, semantic labels, centre directions + depth, RoI quaternions.

Backbones:
* ``vgg16``: the paper's 13 convolutions (64-128-256-512-512 channels, max-pool between blocks);
  the heads use conv4_3 (1/8) and conv5_3 (1/16) as in the paper.
* ``light``: the same four-scale layout with two 3x3 convolutions per scale, strided instead of
  pooled, ``width`` x (1, 2, 4, 8) channels and batch norm: ~30x fewer operations, for CPUs.

Heads (both backbones):
* labels: the 1/8 and 1/16 features are projected, the 1/16 ones upsampled and added (the
  paper's fusion), then decoded with the 1/4 and 1/2 backbone features (shallow skips that sharpen
  the mask borders at a small cost) to per-class logits, bilinearly upsampled to the input size.
* vertex: the same fusion into a separate branch giving, per class, the unit direction to the
  object's 2D centre (2 channels) and its "normalised depth" (1 channel, see ``depth`` in
  :mod:`inerf_ros.posecnn.model`), upsampled to the input size.
* rotation: 7x7 RoI-aligned 1/8 and 1/16 features of each object's box -> 2 fully connected layers
  -> one quaternion per class (x, y, z, w). The quaternion is *allocentric* (relative to the
  viewing ray of the object's centre, see :func:`ray_rotation`), which makes the appearance of
  an object's crop depend on its rotation only, not on where it is in the image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inerf_ros.posecnn.roi import roi_align

BACKBONES = ("light", "vgg16")


def _conv(cin: int, cout: int, stride: int = 1, norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class LightBackbone(nn.Module):
    """Four scales (1/2, 1/4, 1/8, 1/16), two 3x3 convolutions each, the first one strided."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        self.channels = chans
        stages, cin = [], 3
        for cout in chans:
            stages.append(nn.Sequential(_conv(cin, cout, 2), _conv(cout, cout)))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of the image ``x`` at strides 2, 4, 8 and 16 (one per stage)."""
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class VGG16Backbone(nn.Module):
    """VGG16's 13 convolutions; outputs conv2_2 (1/2), conv3_3 (1/4), conv4_3 (1/8), conv5_3 (1/16)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        plan = [(2, width), (2, 2 * width), (3, 4 * width), (3, 8 * width), (3, 8 * width)]
        self.channels = [c for _, c in plan[1:]]
        blocks, cin = [], 3
        for repeats, cout in plan:
            layers = []
            for _ in range(repeats):
                layers.append(_conv(cin, cout, norm=False))
                cin = cout
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of the image ``x`` after the blocks that end at strides 2, 4, 8 and 16."""
        out = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            if i > 0:
                out.append(x)
        return out


class _FusionDecoder(nn.Module):
    """PoseCNN's 1/8 + 1/16 fusion, then skips from 1/4 (and optionally 1/2) backbone features."""

    def __init__(self, channels: list[int], width: int, out_channels: int, to_half: bool) -> None:
        super().__init__()
        c2, c4, c8, c16 = channels
        self.p16 = nn.Conv2d(c16, width, 1)
        self.p8 = nn.Conv2d(c8, width, 1)
        self.p4 = nn.Conv2d(c4, width, 1)
        self.f4 = _conv(width, width)
        self.to_half = to_half
        if to_half:
            half = max(width // 2, 8)
            self.r2 = nn.Conv2d(width, half, 1)
            self.p2 = nn.Conv2d(c2, half, 1)
            self.f2 = _conv(half, half)
            width = half
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        s2, s4, s8, s16 = feats
        x = F.relu(self.p8(s8) + F.interpolate(self.p16(s16), size=s8.shape[-2:], mode="bilinear",
                                               align_corners=False))
        x = self.f4(F.interpolate(x, size=s4.shape[-2:], mode="bilinear", align_corners=False) + self.p4(s4))
        if self.to_half:
            x = self.f2(F.interpolate(self.r2(x), size=s2.shape[-2:], mode="bilinear", align_corners=False)
                        + self.p2(s2))
        return self.out(x)


class PoseCNN(nn.Module):
    """Network only; geometry (Hough voting, poses) lives in :mod:`inerf_ros.posecnn.model`.

    Args:
        num_classes: object classes, background excluded (labels are 0 = background, 1..N).
        backbone: ``light`` or ``vgg16``.
        width: base channel count (16 for ``light``, 64 for the paper's VGG16).
        decoder_width: channels of the head branches.
        roi_size: RoI align output size (7 in the paper).
        fc_width: width of the rotation head's fully connected layers.
    """

    def __init__(self, num_classes: int, backbone: str = "light", width: int = 16, decoder_width: int = 64,
                 roi_size: int = 7, fc_width: int = 256) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone {backbone!r} is not one of {BACKBONES}")
        self.num_classes = num_classes
        self.roi_size = roi_size
        self.backbone = LightBackbone(width) if backbone == "light" else VGG16Backbone(width)
        chans = self.backbone.channels
        self.label_head = _FusionDecoder(chans, decoder_width, num_classes + 1, to_half=True)
        self.vertex_head = _FusionDecoder(chans, decoder_width, 3 * num_classes, to_half=False)
        self.roi_proj8 = nn.Conv2d(chans[2], decoder_width, 1)
        self.roi_proj16 = nn.Conv2d(chans[3], decoder_width, 1)
        self.rotation_head = nn.Sequential(
            nn.Linear(2 * decoder_width * roi_size * roi_size, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True),
            nn.Linear(fc_width, 4 * num_classes))
        # Start every quaternion near the identity (0, 0, 0, 1) so early point-matching gradients are sane.
        with torch.no_grad():
            last = self.rotation_head[-1]
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias.view(num_classes, 4)[:, 3] = 1.0

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """``image`` (B, 3, H, W), normalised (see :func:`normalise`). Returns ``logits``
        (B, N+1, H, W), ``vertex`` (B, 3N, H, W) as (dx, dy, depth) per class, and the RoI features.
        """
        feats = self.backbone(image)
        size = image.shape[-2:]
        logits = F.interpolate(self.label_head(feats), size=size, mode="bilinear", align_corners=False)
        vertex = F.interpolate(self.vertex_head(feats), size=size, mode="bilinear", align_corners=False)
        return {"logits": logits, "vertex": vertex, "roi8": self.roi_proj8(feats[2]),
                "roi16": self.roi_proj16(feats[3])}

    def quaternions(self, outputs: dict[str, Tensor], boxes: Tensor, batch_index: Tensor,
                    class_index: Tensor) -> Tensor:
        """One unit allocentric quaternion (x, y, z, w) per box, (R, 4), for boxes (R, 4) in input pixels;
        ``class_index`` (R,) in 0..N-1 (label - 1) picks each RoI's output.
        """
        pooled8 = roi_align(outputs["roi8"], boxes, batch_index, self.roi_size, stride=8.0)
        pooled16 = roi_align(outputs["roi16"], boxes, batch_index, self.roi_size, stride=16.0)
        x = torch.cat([pooled8, pooled16], dim=1).flatten(1)
        quats = self.rotation_head(F.relu(x)).view(-1, self.num_classes, 4)
        quats = quats[torch.arange(quats.shape[0], device=quats.device), class_index]
        return quats / quats.norm(dim=1, keepdim=True).clamp_min(1e-8)


MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(image_uint8: Tensor) -> Tensor:
    """(B, H, W, 3) or (B, 3, H, W) uint8/float in [0, 255] -> (B, 3, H, W) float, ImageNet statistics."""
    if image_uint8.shape[-1] == 3 and image_uint8.shape[1] != 3:
        image_uint8 = image_uint8.permute(0, 3, 1, 2)
    x = image_uint8.float() / 255.0
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def quat_to_matrix(q: Tensor) -> Tensor:
    """(R, 4) unit quaternions (x, y, z, w) -> (R, 3, 3), differentiable (no checks, training path)."""
    x, y, z, w = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], dim=-1).reshape(*q.shape[:-1], 3, 3)


def ray_rotation(centres: Tensor, K: Tensor) -> Tensor:
    """(R, 3, 3) rotations taking the optical axis (0, 0, 1) onto the viewing ray of each pixel.

    ``centres`` (R, 2) in pixels, ``K`` (3, 3) or (R, 3, 3). ``cam_R_obj = ray_rotation @ allo_R_obj``.
    """
    if K.ndim == 2:
        K = K.expand(centres.shape[0], 3, 3)
    ones = torch.ones_like(centres[:, :1])
    rays = torch.linalg.solve(K, torch.cat([centres, ones], dim=1)[:, :, None])[:, :, 0]
    rays = rays / rays.norm(dim=1, keepdim=True)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=rays.dtype, device=rays.device).expand_as(rays)
    axis = torch.cross(z, rays, dim=1)
    sin = axis.norm(dim=1)
    cos = rays[:, 2]
    angle = torch.atan2(sin, cos)
    axis = axis / sin.clamp_min(1e-12)[:, None]
    k = torch.zeros(rays.shape[0], 3, 3, dtype=rays.dtype, device=rays.device)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 0] = -axis[:, 2], axis[:, 1], axis[:, 2]
    k[:, 1, 2], k[:, 2, 0], k[:, 2, 1] = -axis[:, 0], -axis[:, 1], axis[:, 0]
    eye = torch.eye(3, dtype=rays.dtype, device=rays.device).expand_as(k)
    return eye + torch.sin(angle)[:, None, None] * k + (1 - torch.cos(angle))[:, None, None] * (k @ k)
