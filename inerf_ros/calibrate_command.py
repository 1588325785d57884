r"""``inerf-ros calibrate-hand-eye BAG``: the wrist camera's hand-eye transform and the robot's base placement
from a robot bag, by localizing the camera with iNeRF and solving ``nerf_T_cam_i = Z @ base_T_tool0_i @ X``.

Every N-th image is localized independently, as replay's offline "mask" column does (PoseCNN prior,
rays in the mask region, the shipped models); the flange pose ``base_T_tool0`` is looked up in the
bag's own /tf + /tf_static at the image's stamp (the chain ``robot_state_publisher`` published).
:mod:`inerf_ros.calibration` solves, rejects outlier estimates and gives the spread. Writes
``DIR/hand_eye.json`` and ``DIR/hand_eye.md``, prints the result and the URDF ``<origin>`` to paste;
with ``--truth`` (the demo scene's ``arm/robot.json``) also the errors against the truth and the
robot's believed values.

Example::

    inerf-ros calibrate-hand-eye demo_out/arm.mcap --objects demo_out/world/objects.yaml --every 10 \
        --truth demo_out/world/arm/robot.json --out out/hand_eye
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from inerf_ros import config as cfg
from inerf_ros.calibration import CalibrationConfig, CalibrationError, calibrate, pose_difference
from inerf_ros.config import option
from inerf_ros.initializer import CameraPriorEstimator
from inerf_ros.object_table import initializer_config
from inerf_ros.replay import ReplayConfig, load_models, node_defaults
from inerf_ros.replay.bag import BagTopics, CameraBag
from inerf_ros.replay.offline import OfflineReplay
from inerf_ros.robot.model import RobotModel
from inerf_ros.tf_tree import TfTree


@dataclasses.dataclass
class HandEyeConfig:
    """What to calibrate from and with."""

    nerf_model: str = option("", "NeRF model directory (empty: the shipped models/nerf_tabletop)")
    posecnn_model: str = option("", "PoseCNN model directory (empty: the shipped models/posecnn_tabletop)")
    objects: str = option("", "object poses in the NeRF frame (make-scene's objects.yaml, e.g. "
                              "demo_out/world/objects.yaml): needed for the PoseCNN prior")
    every: int = option(10, "localize every N-th image of the bag", range=(1, 100000))
    max_frames: int = option(0, "localize at most this many images (0: all that --every selects)",
                             range=(0, 10 ** 9))
    base_frame: str = option("base_link", "the robot's base frame on the bag's TF")
    tool_frame: str = option("tool0", "the flange frame the camera is mounted on")
    device: str = option("cpu", "torch device: cpu, cuda or cuda:N")
    threads: int = option(1, "torch CPU threads (0: torch's default)", range=(0, 1024))


# Below this RMS flange rotation about a second axis the hint to rotate the wrist more is printed: on the demo
# arm's approach-and-circle (3.5 deg) the translation along the circling axis has a 1-sigma of ~7 mm.
WEAK_SECOND_AXIS_DEG = 10.0

# An estimator: one bag frame -> (world_T_cam in metres, or None, and why not).
Estimator = Callable[[object], tuple]


def tf_tree_of(bag: CameraBag) -> TfTree:
    """All of the bag's /tf and /tf_static in one tree (history kept for the whole bag)."""
    store = get_typestore(Stores.ROS2_KILTED)
    tree = TfTree(cache_time_s=1e9, time_jump_back_s=1e9)
    for _, topic, msgtype, raw in bag.robot_messages:
        if topic not in ("/tf", "/tf_static"):
            continue
        try:
            msg = store.deserialize_cdr(raw, msgtype)
        except Exception as error:  # noqa: BLE001 - corrupt bytes raise anything from struct to IndexError
            bag.problems.add(f"corrupt messages on {topic}", f"{type(error).__name__}: {error}")
            continue
        for transform in msg.transforms:
            t, q = transform.transform.translation, transform.transform.rotation
            stamp_s = transform.header.stamp.sec + 1e-9 * transform.header.stamp.nanosec
            try:
                tree.set_transform_quat(transform.header.frame_id.lstrip("/"), transform.child_frame_id.lstrip("/"),
                                        stamp_s, (t.x, t.y, t.z), (q.x, q.y, q.z, q.w), static=topic == "/tf_static")
            except ValueError as error:
                bag.problems.add("transforms rejected", str(error))
    return tree


def _xyz_quat(pose: np.ndarray) -> dict:
    return {"xyz": [float(v) for v in pose[:3, 3]],
            "quat_xyzw": [float(v) for v in Rotation.from_matrix(pose[:3, :3]).as_quat()],
            "matrix": pose.tolist()}


def urdf_origin(parent_T_child: np.ndarray, parent: str, child: str) -> str:
    """The fixed joint a user pastes into the URDF (rpy: extrinsic roll, pitch, yaw about x, y, z)."""
    rpy = Rotation.from_matrix(parent_T_child[:3, :3]).as_euler("xyz")
    xyz = " ".join(f"{v:.6f}" for v in parent_T_child[:3, 3])
    return (f'<joint name="{parent}_to_{child}" type="fixed">\n  <parent link="{parent}"/>\n'
            f'  <child link="{child}"/>\n  <origin xyz="{xyz}" rpy="{" ".join(f"{v:.6f}" for v in rpy)}"/>\n</joint>')


def _urdf_joint(tree: TfTree, tool_frame: str, camera_frame: str, stamp_s: float, tool0_T_cam: np.ndarray) -> str:
    """The URDF joint from the tool frame to its child on the way to the camera (e.g. camera_link), so that
    the fixed links below it (camera_link -> optical, from the camera's own URDF) stay as they are.
    """
    child, below = camera_frame, np.eye(4)
    path = [camera_frame]
    while True:
        parent = tree.parent(path[-1], stamp_s)
        if parent is None or parent == tool_frame or len(path) > 50:
            break
        path.append(parent)
    if tree.parent(path[-1], stamp_s) == tool_frame:
        child = path[-1]
        below = tree.lookup(child, camera_frame, stamp_s)   # child_T_cam, fixed links
    return urdf_origin(tool0_T_cam @ np.linalg.inv(below), tool_frame, child)


def check_chain(tree: TfTree, config: HandEyeConfig) -> None:
    """CalibrationError unless the tree has both the base and the tool frame (checked before loading models)."""
    missing = [f for f in (config.base_frame, config.tool_frame) if f not in tree.frames()]
    if missing:
        raise CalibrationError(f"the bag's TF has no {' and no '.join(missing)} frame: no {config.base_frame} -> "
                               f"{config.tool_frame} chain to calibrate against (frames on TF: "
                               f"{', '.join(sorted(tree.frames())) or 'none'})")


def calibrate_bag(bag: CameraBag, estimate: Estimator, config: HandEyeConfig, calibration: CalibrationConfig,
                  progress: bool = True, tree: TfTree | None = None) -> dict:
    """Localize frames with ``estimate``, look up the flange at each stamp, solve; the result as a dict.

    Raises CalibrationError when the bag has no base -> tool chain on TF, too few frames have an
    estimate, or the motion is degenerate.
    """
    tree = tree or tf_tree_of(bag)
    check_chain(tree, config)
    total = len(range(0, bag.num_images, config.every))
    total = min(total, config.max_frames) if config.max_frames else total
    bar = tqdm(total=total, desc="calibrate-hand-eye", unit="frame", disable=not progress)
    used, skipped, camera_frame = [], {}, ""
    nerf_T_world = np.linalg.inv(bag.world_T_nerf)
    for frame in bag.frames(config.every, config.max_frames):
        bar.update(1)
        if frame.problem:
            skipped[frame.index] = frame.problem
            continue
        try:
            base_T_tool0 = tree.lookup(config.base_frame, config.tool_frame, frame.stamp_s)
        except LookupError as error:
            skipped[frame.index] = f"no {config.base_frame} -> {config.tool_frame} at the stamp: {error}"
            continue
        world_T_cam, why = estimate(frame)
        if world_T_cam is None:
            skipped[frame.index] = why
            continue
        camera_frame = camera_frame or frame.frame_id
        used.append((frame.index, frame.stamp_s, nerf_T_world @ np.asarray(world_T_cam, dtype=np.float64),
                     base_T_tool0))
        bar.set_postfix_str(f"{len(used)} estimates")
    bar.close()
    if len(used) < calibration.min_frames:
        reasons = sorted({why.split(":")[0] for why in skipped.values()})
        raise CalibrationError(f"only {len(used)} of {total} frames have a camera estimate and a flange pose; need "
                               f"{calibration.min_frames} (try a smaller --every; skipped: {'; '.join(reasons)})")
    result = calibrate(np.stack([u[2] for u in used]), np.stack([u[3] for u in used]), calibration)
    x, z = result.tool0_T_cam, result.nerf_T_base
    current = None  # the hand-eye the robot publishes now (its URDF's), when the camera hangs below the tool
    try:
        current = tree.lookup(config.tool_frame, camera_frame, used[0][1]) if camera_frame else None
    except LookupError:
        pass
    return {
        "bag": str(bag.path), "camera_frame": camera_frame or "camera", "tool_frame": config.tool_frame,
        "base_frame": config.base_frame,
        "tool0_T_camera": _xyz_quat(x), "nerf_T_base": _xyz_quat(z), "world_T_base": _xyz_quat(bag.world_T_nerf @ z),
        "frames": {"images_in_bag": bag.num_images, "every": config.every, "tried": total, "estimated": len(used),
                   "used": int(result.inliers.sum()),
                   "rejected_as_outliers": [used[k][0] for k in np.where(~result.inliers)[0]],
                   "skipped": {str(k): v for k, v in skipped.items()}},
        "residuals": [{"frame": u[0], "stamp_s": u[1], "translation_m": float(t), "rotation_deg": float(r),
                       "inlier": bool(ok), "nerf_T_cam": u[2].tolist(), "base_T_tool0": u[3].tolist()}
                      for u, t, r, ok in zip(used, result.residual_translation_m, result.residual_rotation_deg,
                                             result.inliers)],
        "spread": {key: value for key, value in result.to_dict().items()
                   if key in ("sigma_tool0_T_cam", "sigma_nerf_T_base", "jackknife_tool0_T_cam",
                              "second_axis_deg", "weakest_direction_tool0", "sigma_along_weakest_m")},
        "tf_tool0_T_camera": None if current is None else _xyz_quat(current),
        "change_from_tf": None if current is None else dict(zip(("translation_m", "rotation_deg"),
                                                                pose_difference(x, current))),
        "urdf": _urdf_joint(tree, config.tool_frame, camera_frame, used[0][1], x) if camera_frame else
        urdf_origin(x, config.tool_frame, "camera"),
    }


def compare_with_truth(summary: dict, robot_json: Path) -> dict:
    """Errors (translation m, rotation deg) of the estimate and of the robot's believed model against the
    truth, from a demo scene's ``arm/robot.json``.
    """
    content = json.loads(Path(robot_json).read_text())
    truth, believed = RobotModel.from_dict(content["truth"]), RobotModel.from_dict(content["believed"])
    x = np.array(summary["tool0_T_camera"]["matrix"])
    world_T_base = np.array(summary["world_T_base"]["matrix"])

    def pair(a, b):
        t, r = pose_difference(a, b)
        return {"translation_m": t, "rotation_deg": r}
    return {"robot_json": str(robot_json),
            "tool0_T_camera_error": pair(x, truth.tool0_T_camera_optical),
            "believed_tool0_T_camera_error": pair(believed.tool0_T_camera_optical, truth.tool0_T_camera_optical),
            "world_T_base_error": pair(world_T_base, truth.world_T_base),
            "believed_world_T_base_error": pair(believed.world_T_base, truth.world_T_base)}


def _cm_deg(error: dict) -> str:
    return f"{100 * error['translation_m']:.2f} cm / {error['rotation_deg']:.2f} deg"


def describe(summary: dict) -> list[str]:
    """The lines printed and written to hand_eye.md."""
    x, frames, spread = summary["tool0_T_camera"], summary["frames"], summary["spread"]
    rpy = np.degrees(Rotation.from_quat(x["quat_xyzw"]).as_euler("xyz"))
    inliers = [r for r in summary["residuals"] if r["inlier"]]
    lines = [
        f"{summary['tool_frame']} -> {summary['camera_frame']}: xyz {' '.join(f'{v:.4f}' for v in x['xyz'])} m, "
        f"quat xyzw {' '.join(f'{v:.5f}' for v in x['quat_xyzw'])} (rpy {' '.join(f'{v:.2f}' for v in rpy)} deg)",
        f"nerf -> {summary['base_frame']}: xyz {' '.join(f'{v:.4f}' for v in summary['nerf_T_base']['xyz'])} m, "
        f"quat xyzw {' '.join(f'{v:.5f}' for v in summary['nerf_T_base']['quat_xyzw'])}",
        f"frames: {frames['used']} used of {frames['estimated']} estimated ({frames['tried']} tried: every "
        f"{frames['every']} of {frames['images_in_bag']} images); rejected as outliers: "
        f"{frames['rejected_as_outliers'] or 'none'}",
        f"residuals of the used frames: median {100 * float(np.median([r['translation_m'] for r in inliers])):.2f} cm "
        f"/ {float(np.median([r['rotation_deg'] for r in inliers])):.2f} deg, max "
        f"{100 * max(r['translation_m'] for r in inliers):.2f} cm / {max(r['rotation_deg'] for r in inliers):.2f} deg",
        f"spread of the hand-eye transform: 1-sigma {_cm_deg(spread['sigma_tool0_T_cam'])}"
        + (f", block jackknife {_cm_deg(spread['jackknife_tool0_T_cam'])}"
           if spread["jackknife_tool0_T_cam"] else "")
        + f"; rotation about the 2nd axis {spread['second_axis_deg']:.1f} deg RMS",
        f"least determined: the translation along {summary['tool_frame']} "
        f"({' '.join(f'{v:.2f}' for v in spread['weakest_direction_tool0'])}), 1-sigma "
        f"{100 * spread['sigma_along_weakest_m']:.2f} cm" + (
            " (the flange turned mostly about this axis: wrist rotations about other axes would pin it down)"
            if spread["second_axis_deg"] < WEAK_SECOND_AXIS_DEG else ""),
    ]
    if summary.get("change_from_tf"):
        lines.append(f"change from the hand-eye on the bag's TF (the robot's URDF now): "
                     f"{_cm_deg(summary['change_from_tf'])}")
    truth = summary.get("truth")
    if truth:
        lines += [f"against the truth ({truth['robot_json']}):",
                  f"  hand-eye estimated {_cm_deg(truth['tool0_T_camera_error'])}, believed "
                  f"{_cm_deg(truth['believed_tool0_T_camera_error'])}",
                  f"  base placement estimated {_cm_deg(truth['world_T_base_error'])}, believed "
                  f"{_cm_deg(truth['believed_world_T_base_error'])}"]
    return lines


def write_outputs(summary: dict, out_dir: Path) -> None:
    """Write ``hand_eye.json`` (the summary) and ``hand_eye.md`` (its description and the URDF ``<origin>``) into
    ``out_dir``, creating it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "hand_eye.json").write_text(json.dumps(summary, indent=1))
    text = ["# Hand-eye calibration", "", f"Bag: `{summary['bag']}`", ""]
    text += [f"  {line}" if line.startswith(" ") else f"- {line}" for line in describe(summary)]
    text += ["", "URDF (paste into the robot's description):", "", "```xml", summary["urdf"], "```", ""]
    (out_dir / "hand_eye.md").write_text("\n".join(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inerf-ros calibrate-hand-eye`` arguments: the bag, outputs, truth and the three configs' flags."""
    parser.add_argument("bag", help="a robot bag (.mcap or rosbag2 directory) with images, camera_info and the "
                                    "arm's /tf + /tf_static")
    parser.add_argument("--out", default="hand_eye", help="directory for hand_eye.json and hand_eye.md (created)")
    parser.add_argument("--truth", default="", help="a demo scene's arm/robot.json: print the errors against the "
                                                    "truth and against the robot's believed values")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cfg.add_arguments(parser, HandEyeConfig)
    cfg.add_arguments(parser, CalibrationConfig)
    cfg.add_arguments(parser, BagTopics)


def _inerf_estimator(bag: CameraBag, config: HandEyeConfig) -> Estimator:
    """Replay's offline "mask" column (PoseCNN prior + mask region) with inerf_node's optimizer settings."""
    if not config.objects:
        raise CalibrationError("no object table: pass --objects (make-scene's objects.yaml) for the PoseCNN prior")
    init_config = initializer_config(config.objects)
    model, detector = load_models(ReplayConfig(nerf_model=config.nerf_model, posecnn_model=config.posecnn_model,
                                               device=config.device), need_posecnn=True)
    optimizer, sampling = node_defaults()
    runner = OfflineReplay(model, detector, CameraPriorEstimator(init_config), bag.world_T_nerf, optimizer, sampling,
                           ["mask"], device=config.device, overlay_scale=0.0)

    def estimate(frame):
        record = runner.run_frame(frame)[0][0]
        if not record.has_estimate:
            return None, f"{record.status}: {record.message}"
        return np.array(record.world_T_cam), ""
    return estimate


def run(args: argparse.Namespace) -> int:
    """``inerf-ros calibrate-hand-eye``: 0 on success, 2 with the reason on stderr when the bag cannot be calibrated."""
    config = cfg.from_args(HandEyeConfig, args)
    calibration = cfg.from_args(CalibrationConfig, args)
    topics = cfg.from_args(BagTopics, args)
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        with CameraBag(args.bag, topics) as bag:
            tree = tf_tree_of(bag)
            check_chain(tree, config)  # before the models load: a bag without an arm fails at once
            summary = calibrate_bag(bag, _inerf_estimator(bag, config), config, calibration,
                                    progress=not args.no_progress, tree=tree)
            problems = bag.problems.lines()
        if args.truth:
            summary["truth"] = compare_with_truth(summary, Path(args.truth))
    except (CalibrationError, FileNotFoundError, ValueError, KeyError) as error:
        print(f"calibrate-hand-eye: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    summary["problems"] = problems
    write_outputs(summary, Path(args.out))
    for line in describe(summary) + problems:
        print(line)
    print("URDF:\n" + summary["urdf"])
    print(f"calibrate-hand-eye: wrote {Path(args.out) / 'hand_eye.json'} and hand_eye.md")
    return 0
