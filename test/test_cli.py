"""Every `inerf-ros` command answers --help, and the shared defaults build valid configs."""
import pytest

from inerf_ros import cli
from inerf_ros import config as config_tools


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_help(command, capsys):
    if command not in cli._available():
        pytest.fail(f"command {command} is listed but its module {cli.COMMANDS[command][0]} is missing")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: inerf-ros " + command in capsys.readouterr().out


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "train-nerf" in out and "replay" in out


def test_replay_and_demo_optimizer_defaults_are_a_valid_config():
    from inerf_ros.replay import node_defaults

    for config in node_defaults():  # the inerf_node section of config/localize.yaml
        config_tools.validate(config)
