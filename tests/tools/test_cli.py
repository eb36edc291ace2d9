"""The one `mtqnet` command: subcommands, their help, one-line errors, the old aliases, `python -m modeling_mtqnet`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modeling_mtqnet import cli

BIN = Path(sys.executable).parent


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    for name, (_, summary) in cli.COMMANDS.items():
        assert f"  {name}" in shown and summary in shown


def test_no_command_prints_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: mtqnet" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: mtqnet {name} ")
    assert "--" in shown  # options are listed


def test_unknown_command_is_named(capsys):
    assert cli.main(["scroe"]) == 2
    error = capsys.readouterr().err
    assert "unknown command 'scroe'" in error and "score" in error


def test_failure_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    manifest = tmp_path / "in.csv"
    manifest.write_text("path\na.wav\n")
    argv = ["annotate", "--input", str(manifest), "--output", str(tmp_path / "out.csv"), "--teacher", "no-such-teacher"]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("mtqnet annotate: error: ")
    assert "no-such-teacher" in error and "Traceback" not in error
    with pytest.raises(ValueError, match="no-such-teacher"):
        cli.main(["--debug", *argv])


def test_version(capsys):
    from modeling_mtqnet import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mtqnet {__version__}"


def run(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(arguments, capture_output=True, text=True, timeout=300)


def test_console_scripts_and_module_entry_point():
    """`mtqnet`, `python -m modeling_mtqnet` and the aliases `mtqnet-score` / `mtqnet-annotate` (installed)."""
    console = run([str(BIN / "mtqnet"), "score", "--help"])
    module = run([sys.executable, "-m", "modeling_mtqnet", "score", "--help"])
    assert console.returncode == 0 and module.returncode == 0, console.stderr + module.stderr
    assert console.stdout == module.stdout and console.stdout.startswith("usage: mtqnet score ")
    for alias, option in (("mtqnet-score", "--chunk_length_s"), ("mtqnet-annotate", "--teacher")):
        completed = run([str(BIN / alias), "--help"])
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith(f"usage: {alias} ") and option in completed.stdout


def test_top_level_scripts_print_one_line_errors(tmp_path):
    """`python train.py` and `python push_to_hub.py` fail as `mtqnet train` / `mtqnet push` do: one line, no
    traceback, exit 2; `--debug` first shows the traceback."""
    repo = Path(__file__).resolve().parents[2]
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,s_mos\n")
    arguments = ["--train_file", str(manifest), "--output_dir", str(tmp_path / "out"), "--preset", "tiny"]
    completed = run([sys.executable, str(repo / "train.py"), *arguments])
    assert completed.returncode == 2, completed.stderr[-2000:]
    error = completed.stderr.strip().splitlines()[-1]
    assert error.startswith("train.py: error: ") and "no rows" in error and "Traceback" not in completed.stderr
    debug = run([sys.executable, str(repo / "train.py"), "--debug", *arguments])
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    pushed = run([sys.executable, str(repo / "push_to_hub.py"), str(tmp_path / "nowhere"), "me/model", "--dry_run"])
    assert pushed.returncode == 2 and "Traceback" not in pushed.stderr and "nowhere" in pushed.stderr
