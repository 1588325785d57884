"""The replay report: Table II, per-frame CSV/JSON, plots and an MCAP of the estimates.

Layout of ``--report DIR``:

* ``report.md``: the table (rows = metrics, columns = configurations, as seed 003's Table II),
  the notes (what was missing in the bag, what was skipped) and the list of files;
* ``summary.json``: the numbers of the table, the notes and problems, the settings;
* ``frames.csv`` / ``frames.json``: one row per frame and column (errors, iterations, timings, pose);
* ``error_over_time.png``, ``error_vs_iteration.png``, ``trajectory_top.png``;
* ``estimates.mcap``: ground truth and estimates on ``/tf`` and as PoseStamped, the overlays as
  Image (Foxglove opens it; ``ros2 bag play`` replays it into RViz).

Frames without an estimate (no prior, bad image, ...) count as failures in the success rates;
iterations and timings are medians over the frames that have an estimate.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from inerf_ros import evaluation
from inerf_ros.scene.bag_command import tf_stamped

ACCURACY_ROWS = [
    ("translation < 5 cm", "success_translation", "{:.2f}"),
    ("rotation < 5 deg", "success_rotation", "{:.2f}"),
    ("median iterations to converge", "median_iterations", "{:.0f}"),
    ("both (< 5 cm and < 5 deg)", "success", "{:.2f}"),
    ("median translation error (cm)", "median_translation_error", "cm"),
    ("median rotation error (deg)", "median_rotation_error_deg", "{:.2f}"),
    ("converged (of estimates)", "converged", "{:.2f}"),
    ("frames with an estimate", "estimates", "{:d}"),
    ("frames", "frames", "{:d}"),
    ("median optimizer time (s)", "median_seconds", "{:.2f}"),
    ("median PoseCNN + initializer time (s)", "median_detector_s", "{:.2f}"),
    ("median latency, image to estimate (s)", "median_latency_s", "{:.2f}"),
]
RUNTIME_ROWS = [row for row in ACCURACY_ROWS if row[1] in (
    "median_iterations", "converged", "estimates", "frames", "median_seconds", "median_detector_s",
    "median_latency_s")]


def _median(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(values)) if values else float("nan")


def summarize_column(records) -> dict:
    """Table II figures of one column's records (see the module doc for frames without an estimate)."""
    estimated = [r for r in records if r.has_estimate]
    with_truth = [r for r in records if r.world_T_cam_gt is not None and r.status != "no ground truth"]
    trials = [evaluation.Trial(
        group=r.column, rotation_error_deg=r.rotation_error_deg if r.has_estimate else math.inf,
        translation_error=r.translation_error_m if r.has_estimate else math.inf, iterations=r.iterations,
        converged=r.converged, seconds=r.optimizer_s, frame=str(r.frame)) for r in with_truth]
    summary = evaluation.summarize(trials) if trials else {}
    summary.update({
        "frames": len(records),
        "estimates": len(estimated),
        "frames_with_ground_truth": len(with_truth),
        "median_iterations": _median([r.iterations for r in estimated]),
        "converged": float(np.mean([r.converged for r in estimated])) if estimated else float("nan"),
        "median_seconds": _median([r.optimizer_s for r in estimated]),
        "mean_seconds": float(np.mean([r.optimizer_s for r in estimated])) if estimated else float("nan"),
        "median_detector_s": _median([r.detector_s for r in records]),
        "median_latency_s": _median([r.latency_s for r in estimated]),
    })
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    summary["status_counts"] = statuses
    return summary


def summarize_all(records, names: dict[str, str]) -> dict[str, dict]:
    """{column title: summary}, in the order of ``names`` (column key -> title)."""
    out = {}
    for key, title in names.items():
        mine = [r for r in records if r.column == key]
        if mine:
            out[title] = summarize_column(mine)
    return out


def has_accuracy(summaries: dict[str, dict]) -> bool:
    """Whether any column has trials with ground truth (else the table shows runtime only)."""
    return any(s.get("trials", 0) for s in summaries.values())


def table(summaries: dict[str, dict]) -> str:
    """The report's markdown table: accuracy and runtime rows, or runtime only without ground truth."""
    rows = ACCURACY_ROWS if has_accuracy(summaries) else RUNTIME_ROWS
    return evaluation.markdown_table(summaries, rows=rows)


CSV_FIELDS = ["column", "frame", "stamp_s", "status", "rotation_error_deg", "translation_error_m",
              "start_rotation_error_deg", "start_translation_error_m", "iterations", "converged", "final_loss",
              "optimizer_s", "detector_s", "latency_s", "detections", "sampling", "x", "y", "z", "qx", "qy", "qz", "qw",
              "gt_x", "gt_y", "gt_z", "message"]


def _quat(pose) -> list[float]:
    return Rotation.from_matrix(np.asarray(pose)[:3, :3]).as_quat().tolist()


def write_frames(records, out: Path) -> None:
    """Write ``frames.csv`` into ``out``: one row per frame and column (errors, timings, estimated and true pose)."""
    with open(out / "frames.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            row = {k: getattr(r, k) for k in CSV_FIELDS if hasattr(r, k)}
            if r.world_T_cam is not None:
                pose = np.asarray(r.world_T_cam)
                row.update(dict(zip(("x", "y", "z"), pose[:3, 3].tolist())))
                row.update(dict(zip(("qx", "qy", "qz", "qw"), _quat(pose))))
            if r.world_T_cam_gt is not None:
                row.update(dict(zip(("gt_x", "gt_y", "gt_z"), np.asarray(r.world_T_cam_gt)[:3, 3].tolist())))
            writer.writerow(row)
    evaluation.write_json(out / "frames.json", {"frames": [dataclasses.asdict(r) for r in records]})


# -- plots ----------------------------------------------------------------------------------------------
def _pyplot():
    # lazy: matplotlib takes ~1 s to import and only the plots need it; Agg must be chosen before pyplot loads
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy, and only after use("Agg")
    return plt


def plot_error_over_time(records, names: dict[str, str], path: Path) -> Path | None:
    """Plot rotation and translation error against bag time, one line per column; None when nothing has an error."""
    plt = _pyplot()
    stamps = [r.stamp_s for r in records if math.isfinite(r.stamp_s)]
    if not stamps or not any(r.has_estimate and math.isfinite(r.rotation_error_deg) for r in records):
        return None
    t0 = min(stamps)
    fig, (ax_rot, ax_trans) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for key, title in names.items():
        mine = sorted((r for r in records if r.column == key and r.has_estimate
                       and math.isfinite(r.rotation_error_deg)), key=lambda r: r.stamp_s)
        if not mine:
            continue
        t = [r.stamp_s - t0 for r in mine]
        ax_rot.plot(t, [max(r.rotation_error_deg, 1e-3) for r in mine], ".-", label=title)
        ax_trans.plot(t, [max(100 * r.translation_error_m, 1e-3) for r in mine], ".-", label=title)
    ax_rot.axhline(evaluation.ROTATION_THRESHOLD_DEG, color="grey", linestyle="--", linewidth=0.8)
    ax_trans.axhline(100 * evaluation.TRANSLATION_THRESHOLD_M, color="grey", linestyle="--", linewidth=0.8)
    ax_rot.set(ylabel="rotation error (deg)", yscale="log")
    ax_trans.set(ylabel="translation error (cm)", yscale="log", xlabel="bag time (s)")
    ax_rot.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_vs_iteration(records, names: dict[str, str], path: Path) -> Path | None:
    """Plot the median error against iteration, per column; None when no frame kept an error history."""
    trials = [evaluation.Trial(group=names.get(r.column, r.column), rotation_error_deg=r.rotation_error_deg,
                               translation_error=r.translation_error_m, iterations=r.iterations,
                               converged=r.converged, seconds=r.optimizer_s,
                               error_history=[list(e) for e in r.error_history])
              for r in records if r.error_history]
    return evaluation.plot_error_vs_iteration(trials, path, title="error vs iteration (median, quartiles)")


def plot_trajectory_top(records, names: dict[str, str], path: Path) -> Path | None:
    """Plot the camera positions from above (x, y in the world): truth and each column's estimates; None when empty."""
    plt = _pyplot()
    truth = {r.frame: np.asarray(r.world_T_cam_gt)[:3, 3] for r in records if r.world_T_cam_gt is not None}
    if not truth and not any(r.has_estimate for r in records):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 6))
    if truth:
        xyz = np.array([truth[k] for k in sorted(truth)])
        ax.plot(xyz[:, 0], xyz[:, 1], "k-", linewidth=1.5, label="ground truth")
    for key, title in names.items():
        xyz = np.array([np.asarray(r.world_T_cam)[:3, 3] for r in records if r.column == key and r.has_estimate])
        if len(xyz):
            ax.plot(xyz[:, 0], xyz[:, 1], "o", markersize=3, label=title)
    ax.set(xlabel="x (m)", ylabel="y (m)", title="camera trajectory, top view (world frame)", aspect="equal")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- MCAP -----------------------------------------------------------------------------------------------
def write_mcap(records, names: dict[str, str], overlays: dict[int, np.ndarray], world_T_nerf: np.ndarray,
               path: Path, world_frame: str = "world", nerf_frame: str = "nerf",
               gt_frame: str = "camera_optical_gt") -> Path | None:
    """Ground truth, estimates (TF + PoseStamped per column) and overlay images, in one MCAP file."""
    stamped = [r for r in records if math.isfinite(r.stamp_s)]
    if not stamped:
        return None
    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types

    def stamp(seconds: float):
        ns = int(round(seconds * 1e9))
        return types["builtin_interfaces/msg/Time"](sec=ns // 10 ** 9, nanosec=ns % 10 ** 9), ns

    def pose_stamped(pose, header):
        q = _quat(pose)
        t = np.asarray(pose)[:3, 3]
        return types["geometry_msgs/msg/PoseStamped"](header=header, pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            orientation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))

    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".mcap-")) / "bag"
    nerf_T_world = np.linalg.inv(world_T_nerf)
    try:
        with Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            conn = {}

            def write(topic: str, msgtype: str, message, ns: int) -> None:
                if topic not in conn:
                    conn[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(conn[topic], ns, store.serialize_cdr(message, msgtype))

            first, first_ns = stamp(min(r.stamp_s for r in stamped))
            write("/tf_static", "tf2_msgs/msg/TFMessage", types["tf2_msgs/msg/TFMessage"](
                transforms=[tf_stamped(types, first, world_frame, nerf_frame, world_T_nerf)]), first_ns)
            seen_truth = set()
            for r in sorted(stamped, key=lambda r: (r.stamp_s, r.column)):
                msg_stamp, ns = stamp(r.stamp_s)
                header = types["std_msgs/msg/Header"](stamp=msg_stamp, frame_id=world_frame)
                transforms = []
                if r.world_T_cam_gt is not None and r.frame not in seen_truth:
                    seen_truth.add(r.frame)
                    transforms.append(tf_stamped(types, msg_stamp, world_frame, gt_frame, np.asarray(r.world_T_cam_gt)))
                    write("/replay/ground_truth", "geometry_msgs/msg/PoseStamped",
                          pose_stamped(r.world_T_cam_gt, header), ns)
                if r.has_estimate:
                    transforms.append(tf_stamped(types, msg_stamp, nerf_frame, f"camera_optical_{r.column}",
                                                 nerf_T_world @ np.asarray(r.world_T_cam)))
                    write(f"/replay/{r.column}/camera_pose", "geometry_msgs/msg/PoseStamped",
                          pose_stamped(r.world_T_cam, header), ns)
                if transforms:
                    write("/tf", "tf2_msgs/msg/TFMessage", types["tf2_msgs/msg/TFMessage"](transforms=transforms), ns)
                overlay = overlays.pop(r.frame, None)
                if overlay is not None:
                    image_header = types["std_msgs/msg/Header"](stamp=msg_stamp, frame_id=f"camera_optical_{r.column}")
                    write("/replay/overlay", "sensor_msgs/msg/Image", types["sensor_msgs/msg/Image"](
                        header=image_header, height=overlay.shape[0], width=overlay.shape[1], encoding="rgb8",
                        is_bigendian=0, step=3 * overlay.shape[1], data=np.ascontiguousarray(overlay).reshape(-1)), ns)
        (mcap,) = list(tmp.glob("*.mcap"))
        shutil.move(str(mcap), path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def write_report(out: Path, records, names: dict[str, str], notes: list[str], settings: dict,
                 overlays: dict[int, np.ndarray], world_T_nerf: np.ndarray, frames_info: dict,
                 extra_sections: list[str] = (), summary_keys: dict | None = None) -> tuple[str, dict]:
    """Write every file of the report; returns (the markdown table, the summaries).

    ``summary_keys`` go to the top level of ``summary.json`` (a robot replay's figures through TF).
    """
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize_all(records, names)
    text_table = table(summaries) if summaries else "(no frames were replayed)"
    write_frames(records, out)
    files = ["frames.csv", "frames.json", "summary.json"]
    for name, plot in (("error_over_time.png", plot_error_over_time), ("error_vs_iteration.png",
                                                                       plot_error_vs_iteration),
                       ("trajectory_top.png", plot_trajectory_top)):
        if plot(records, names, out / name):
            files.append(name)
    topics = settings.get("topics", {})
    if write_mcap(records, names, dict(overlays), world_T_nerf, out / "estimates.mcap",
                  topics.get("world_frame", "world"), topics.get("nerf_frame", "nerf"),
                  topics.get("gt_frame", "camera_optical_gt")):
        files.append("estimates.mcap")
    evaluation.write_json(out / "summary.json", {**(summary_keys or {}), "table": summaries, "notes": notes,
                                                 "frames": frames_info, "settings": settings})
    accuracy = has_accuracy(summaries)
    lines = ["# Replay report", "", f"Bag: `{settings.get('bag', '')}`", ""]
    if not accuracy:
        lines += ["**No ground truth: runtime figures only, no accuracy.**", ""]
    lines += [text_table, ""]
    if accuracy:
        lines += ["Success rates count every frame with ground truth; a frame without an estimate is a failure. "
                  "Iterations and times are medians over the frames with an estimate.", ""]
    lines += list(extra_sections)
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines += ["## Files", ""] + [f"- `{name}`" for name in files] + [""]
    (out / "report.md").write_text("\n".join(lines))
    return text_table, summaries
