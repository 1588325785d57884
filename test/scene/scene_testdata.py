"""Constants shared by the scene tests (imported by name: test/scene is on sys.path under pytest)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
YCB_SIM = REPO_ROOT.parent / "shared" / "data" / "ycb_sim"

# 320x240 keeps object silhouettes large enough for an exact IoU test; few frames keep it fast.
SMALL = {"width": 320, "height": 240, "nerf_views": 4, "nerf_test_every": 2, "posecnn_train_views": 3,
         "posecnn_test_views": 2, "posecnn_scale": 0.5, "arm_duration_s": 0.4, "arm_fps": 15.0,
         "max_texture_size": 256}
