"""inerf-ros: one command with a subcommand per job (`inerf-ros --help` lists them).

Each subcommand lives in the module that owns the job and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches. Modules are imported lazily so that
``inerf-ros --help`` is quick and one broken optional dependency does not take down the others.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# name -> (module, one-line summary). The order is the order of --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("inerf_ros.demo", "run the localization demo on the bundled scene"),
    "make-scene": ("inerf_ros.scene.commands", "render the tabletop demo world with full ground truth"),
    "make-bag": ("inerf_ros.scene.bag_command", "write a ROS 2 bag (MCAP) of a rendered camera trajectory"),
    "train-nerf": ("inerf_ros.nerf.train", "train a NeRF on posed images (transforms.json)"),
    "render": ("inerf_ros.nerf.render_command", "render images from a trained NeRF"),
    "sfm": ("inerf_ros.datasets.sfm", "pose photos with structure from motion (pycolmap) -> transforms.json"),
    "register": ("inerf_ros.register", "pose new photos by inverting the NeRF; write an extended transforms.json"),
    "eval-poses": ("inerf_ros.optim.evaluate", "iNeRF pose-estimation benchmark on held-out views"),
    "make-posecnn-data": ("inerf_ros.posecnn.randomized_scene",
                          "render domain-randomized PoseCNN training frames of a scene's objects"),
    "export-bop": ("inerf_ros.posecnn.bop", "write a rendered split as a BOP dataset (models in mm, mask_visib)"),
    "train-posecnn": ("inerf_ros.posecnn.train", "train PoseCNN on a rendered scene or a BOP dataset"),
    "eval-posecnn": ("inerf_ros.posecnn.evaluate", "evaluate PoseCNN on held-out rendered frames"),
    "detect": ("inerf_ros.posecnn.detect_command", "run PoseCNN on your own photos: pictures + detections.json"),
    "eval-prior": ("inerf_ros.initializer_eval", "evaluate the fused camera prior"),
    "launch": ("inerf_ros.launch_description", "start the live nodes without `ros2 launch`"),
    "replay": ("inerf_ros.replay", "replay a bag through the pipeline and report accuracy and speed"),
    "calibrate-hand-eye": ("inerf_ros.calibrate_command", "hand-eye transform and base placement from a robot bag"),
    "build-workspace": ("inerf_ros.workspace", "one capture (robot bag or photos) -> NeRF, scale, frame, anchors, "
                                               "localize.yaml"),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, summary) in COMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out[name] = (module, summary)
        except ModuleNotFoundError:
            continue
    return out


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: one subparser per available command (their own flags load on demand)."""
    parser = argparse.ArgumentParser(prog="inerf-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in _available().items():
        # Each subparser's arguments are added only when it is chosen (see main), so --help stays fast.
        sub.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``inerf-ros COMMAND ...``; a failure prints one line (``--debug``: the traceback) and returns 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    available = _available()
    if not argv or argv[0] not in available:
        parser = build_parser()
        if argv and not argv[0].startswith("-"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(available)}")
        parser.parse_args(argv or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    debug = "--debug" in rest or os.environ.get("INERF_DEBUG", "") not in ("", "0")
    rest = [a for a in rest if a != "--debug"]
    module_name, summary = available[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"inerf-ros {name}", description=summary,
                                     epilog="--debug: show the traceback of a failure (else one line)")
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, KeyError, TypeError) as error:
        # Bad input (a missing model, a NaN matrix, a malformed file): one line, not a traceback.
        if debug:
            raise
        reason = str(error).splitlines()[0] if str(error) else ""
        print(f"inerf-ros {name}: error: {type(error).__name__}: {reason} (--debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
