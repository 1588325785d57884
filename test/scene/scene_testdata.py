"""Constants shared by the scene tests (imported by name: test/scene is on sys.path under pytest)."""
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
YCB_SIM = REPO_ROOT.parent / "shared" / "data" / "ycb_sim"

# 320x240 keeps object silhouettes large enough for an exact IoU test; few frames keep it fast.
SMALL = {"width": 320, "height": 240, "nerf_views": 4, "nerf_test_every": 2, "posecnn_train_views": 3,
         "posecnn_test_views": 2, "posecnn_scale": 0.5, "arm_duration_s": 0.4, "arm_fps": 15.0,
         "max_texture_size": 256}


def project_silhouette(vertices, faces, cam_T_obj, intrinsics, supersample=8):
    """Rasterise the model's triangles into a boolean mask of the pixels (OpenCV centres) they cover.

    Drawn at ``supersample`` x resolution and averaged: a pixel is in when half of it is covered
    (OpenCV's polygon fill includes every pixel an edge touches, a bias of up to one pixel).
    """
    p = vertices @ cam_T_obj[:3, :3].T + cam_T_obj[:3, 3]
    assert np.all(p[:, 2] > 0), "model behind the camera"
    uv = np.stack([intrinsics.fx * p[:, 0] / p[:, 2] + intrinsics.cx,
                   intrinsics.fy * p[:, 1] / p[:, 2] + intrinsics.cy], axis=1)
    s, shift = supersample, 4
    polys = np.round(((uv + 0.5) * s - 0.5)[faces] * (1 << shift)).astype(np.int32)
    fine = np.zeros((intrinsics.height * s, intrinsics.width * s), np.uint8)
    for triangle in polys:  # one by one: fillPoly of many polygons would XOR their overlaps
        cv2.fillConvexPoly(fine, triangle, 1, lineType=cv2.LINE_8, shift=shift)
    coverage = fine.reshape(intrinsics.height, s, intrinsics.width, s).mean(axis=(1, 3))
    return coverage >= 0.5


def iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def read_bag(path):
    """{topic: type}, {topic: [(stamp_ns, raw bytes, message)]} of a bag, in log order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    messages = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((stamp, raw, reader.deserialize(raw, connection.msgtype)))
    return types, messages
