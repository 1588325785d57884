"""eval-posecnn --out DIR: report.md, metrics.json and the frame images."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from inerf_ros.cli import main
from inerf_ros.posecnn.evaluate import markdown_report

MODEL = Path(__file__).resolve().parents[2] / "models" / "posecnn_tabletop"


@pytest.fixture(scope="module")
def quick_test_split(tmp_path_factory):
    """The demo world's held-out split, quick (2 small frames): the shipped model's classes."""
    # A separate process: the renderer picks its OpenGL back end when mujoco is first imported.
    out = tmp_path_factory.mktemp("scene") / "quick"
    done = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "make-scene", "--quick", "--out", str(out),
                           "--splits", "posecnn_test", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.skipif(not (MODEL / "posecnn.json").is_file(), reason="models/posecnn_tabletop is not in the checkout")
def test_eval_writes_the_report_the_metrics_and_the_frames(quick_test_split, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval-posecnn", "--model", str(MODEL), "--scene", str(quick_test_split), "--threads", "1",
                 "--timing-frames", "0", "--out", str(out), "--frames-per-image", "1"])
    assert code == 0
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 2 and len(metrics["classes"]) == 7
    for figures in metrics["classes"].values():
        assert {"iou", "5deg5cm", "5deg", "5cm", "median_rot_deg", "median_trans_m", "add_auc",
                "add_10pct_diameter"} <= set(figures)
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| class")]
    assert [row.split("|")[1].strip().rstrip(" *") for row in rows] == list(metrics["classes"])
    assert "![frames](frames_00.png)" in report and "![frames](frames_01.png)" in report
    for k in range(2):   # one frame per image, as asked: input | labels | poses side by side
        picture = cv2.imread(str(out / f"frames_{k:02d}.png"))
        assert picture is not None and picture.shape[1] > 2.5 * picture.shape[0]
    assert not (out / "frames_02.png").exists()


def test_markdown_report_formats_missing_and_perfect_figures():
    nan, inf = float("nan"), float("inf")
    figures = {"iou": 1.0, "objects": 3, "detected": 1.0, "5deg5cm": 1.0, "5deg": 1.0, "5cm": 1.0,
               "median_rot_deg": 0.5, "median_trans_m": 0.004, "add_auc": 0.99, "add_10pct_diameter": 1.0,
               "symmetric": True}
    missing = dict(figures, iou=nan, objects=0, detected=nan, median_rot_deg=inf, symmetric=False)
    report = {"model": "m", "scene": "s", "split": "posecnn_test", "frames": 3, "min_visible_fraction": 0.1,
              "classes": {"can": figures, "box": missing},
              "overall": {"mean_iou": 1.0, "5deg5cm": 1.0, "5deg": 1.0, "5cm": 1.0, "add_s_auc": 0.99, "objects": 3,
                          "seconds_per_frame": 0.1, "seconds_per_frame_640x480": nan, "threads": 1,
                          "device": "cpu", "silhouette_refine": True}}
    text = markdown_report(report, [])
    assert "| can * | 1.000 | 3 | 100.0 | 100.0 | 100.0 | 100.0 | 0.5 | 0.4 | 0.990 | 100.0 |" in text
    assert "| box | - | 0 | - | 100.0 | 100.0 | 100.0 | inf |" in text
    assert "## Frames" not in text
