"""`inerf-ros launch`: one process per node, so one node dying never takes the others down."""
import os
import subprocess
import sys
import time

from inerf_ros import launch_description

DIES = [sys.executable, "-c", "import sys; sys.exit(3)"]
LIVES = [sys.executable, "-c", "import time; time.sleep(30)"]


def _stop_after(seconds):
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def test_a_node_that_dies_is_reported_with_its_code_and_the_others_keep_running():
    lines = []
    status = launch_description.supervise({"dies": DIES, "lives": LIVES}, should_stop=_stop_after(1.0),
                                          log=lines.append)
    assert status == 3
    assert lines == ["[inerf_ros] dies exited with code 3; the other nodes keep running"]


def test_respawn_restarts_a_node_that_dies():
    lines = []
    launch_description.supervise({"dies": DIES, "lives": LIVES}, respawn=True, respawn_delay_s=0.1,
                                 should_stop=_stop_after(1.2), log=lines.append)
    assert sum(line == "[inerf_ros] dies restarted" for line in lines) >= 2, lines
    assert not any(line.startswith("[inerf_ros] lives") for line in lines)


def test_every_node_gets_its_own_command_with_its_overrides():
    values = {a.name: a.default for a in launch_description.launch_arguments()}
    values["nerf_model"] = "/models/nerf"
    commands = launch_description.node_commands(values)
    assert list(commands) == ["posecnn_node", "initializer_node", "inerf_node"]
    inerf = commands["inerf_node"]
    assert inerf[:3] == [sys.executable, "-m", "inerf_ros.nodes.inerf_node"]
    assert "model_dir:=/models/nerf" in inerf and "use_prior:=true" in inerf and "use_sim_time:=false" in inerf
    assert "image_raw:=/camera/image_raw" in inerf


def test_launch_reports_a_node_that_cannot_start_in_one_line_and_exits_non_zero(tmp_path, ros_domain_id):
    """The real command line (isolation itself is tested above with plain processes: a full three-node
    launch costs three torch imports).
    """
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain_id))
    env.pop("INERF_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "inerf_ros.cli", "launch", "localize", "--use-posecnn", "false",
                             "--nerf-model", str(tmp_path / "missing_nerf")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert "[inerf_ros] inerf_node exited with code 1; the other nodes keep running" in lines, lines
    reasons = [line for line in lines if "cannot start InerfNode: " in line]
    assert len(reasons) == 1 and "missing_nerf" in reasons[0] and "Traceback" not in result.stderr, lines
