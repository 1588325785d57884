"""Commands given bad input exit 1 with one line naming the problem (a traceback only with --debug)."""
import json

import numpy as np
import pytest

from inerf_ros import cli


def _data(path, matrix, every=False):
    import cv2

    path.mkdir()
    frames = []
    for k in range(4):
        cv2.imwrite(str(path / f"{k}.png"), np.full((12, 16, 3), 128, np.uint8))
        frames.append({"file_path": f"{k}.png", "transform_matrix": matrix if k == 0 or every else np.eye(4).tolist()})
    (path / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    return path


CASES = {
    "missing model": lambda tmp, nerf: ["eval-poses", str(tmp / "nope"), str(_data(tmp / "d", np.eye(4).tolist()))],
    "missing data": lambda tmp, nerf: ["eval-poses", str(nerf), str(tmp / "no_data")],
    "NaN matrix": lambda tmp, nerf: ["eval-poses", str(nerf), str(_data(tmp / "d", [[float("nan")] * 4] * 4))],
    "zero rotation": lambda tmp, nerf: ["eval-poses", str(nerf), str(_data(tmp / "d", [[0.0] * 4] * 3 + [
        [0.0, 0.0, 0.0, 1.0]], every=True))],
}


@pytest.mark.parametrize("case", list(CASES))
def test_command_exits_1_with_one_line(case, nerf_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INERF_DEBUG", raising=False)
    argv = CASES[case](tmp_path, nerf_dir)
    assert cli.main(argv) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "eval-poses:" in line]
    assert len(err) == 1 and err[0].startswith("inerf-ros eval-poses: error: "), err
    with pytest.raises(Exception):   # --debug: the traceback, for a developer
        cli.main(argv + ["--debug"]) if case != "missing model" else cli.main(argv[:1] + ["--debug"] + argv[1:])
