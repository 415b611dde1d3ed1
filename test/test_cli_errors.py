"""A user's mistake never shows a Python traceback: each `dpros` subcommand, given one bad input,
prints one line naming the problem and exits 2; `--debug` shows the traceback instead."""
import os
import signal
import subprocess
import sys

import pytest

from diffusion_policy_ros.cli.main import COMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bad_inputs(tmp):
    """(command words + arguments, what the one line must say) for every subcommand."""
    missing = str(tmp / "missing")
    a_file = tmp / "a_file"
    a_file.write_text("not a dataset folder")
    return {
        ("train",): (["--dataset", missing, "--out", str(tmp / "out")], "is not a dataset"),
        ("eval", "offline"): (["--checkpoint", missing], "does not exist"),
        ("eval", "sim"): (["--checkpoint", missing, "--samplers", "streaming,dpm"], "unknown samplers ['dpm']"),
        ("eval", "policy"): (["--checkpoint", missing], "does not exist"),
        ("bench", "sampler"): (["--checkpoint", missing, "--json", str(tmp / "b.json")], "does not exist"),
        ("bench", "graph"): (["--config", str(tmp / "no.yaml")], "no robot config"),
        ("bench", "safety"): (["--config", str(tmp / "no.yaml")], "no robot config"),
        ("bench", "record"): (["--config", "no_such_robot"], "no robot config 'no_such_robot'"),
        ("sim", "expert"): (["--task", "juggle"], "unknown task 'juggle'"),
        ("sim", "bench"): (["--robots", "no_such_robot"], "no robot config 'no_such_robot'"),
        ("sim", "record"): (["--out", str(a_file), "--episodes", "1"], "is a file, not a dataset folder"),
        ("up",): (["sim", "--config", str(tmp / "no.yaml")], "no robot config"),
        ("export", "lerobot"): ([missing, str(tmp / "lerobot")], "is not a dataset"),
        ("export", "diffusion-policy"): ([missing, str(tmp / "dp.zarr")], "is not a dataset"),
        ("import", "bag"): ([missing, "--out", str(tmp / "ds"), "--task", "t"], "no bag at"),
        ("dataset", "info"): ([missing], "is not a dataset"),
        ("rl", "ncdpo"): (["--checkpoint", missing, "--out", str(tmp / "rl")], "does not exist"),
        ("describe", "gazebo"): (["--config", "no_such_robot", "--out", str(tmp / "gz")],
                                 "no robot config 'no_such_robot'"),
    }


@pytest.fixture
def signal_handlers():
    """`up`, `bench graph` and `eval sim` take over SIGINT and SIGTERM: give them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_every_subcommand_is_covered(tmp_path):
    assert set(bad_inputs(tmp_path)) == set(COMMANDS)


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_one_line_and_exit_2(words, tmp_path, capsys, signal_handlers):
    arguments, expected = bad_inputs(tmp_path)[words]
    assert main([*words, *arguments]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"dpros {' '.join(words)}: ") and expected in line, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "ds").exists()


def test_the_installed_command_shows_the_traceback_only_with_debug(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "diffusion_policy_ros.cli.main", "dataset", "info", str(tmp_path / "missing")]
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DatasetError" in debug.stderr


def test_rl_group_size_must_divide_the_envs(tmp_path, capsys):
    arguments = ["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "rl"), "--envs", "4",
                 "--group-size", "3"]
    assert main(["rl", "ncdpo", *arguments]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "dpros rl ncdpo: --group-size must be >= 1 and divide --envs (4), got 3", line


def test_rl_success_hold_must_not_be_negative(tmp_path, capsys):
    arguments = ["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "rl"), "--success-hold-s", "-0.5"]
    assert main(["rl", "ncdpo", *arguments]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "dpros rl ncdpo: --success-hold-s must be >= 0, got -0.5", line


def test_rl_one_exploring_decision_needs_groups(tmp_path, capsys):
    arguments = ["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "rl"), "--explore-one-decision"]
    assert main(["rl", "ncdpo", *arguments]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == ("dpros rl ncdpo: --explore-one-decision compares a group's episodes: it needs --group-size >= 2"), line
