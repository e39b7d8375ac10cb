"""A mistyped option on any command is the usual short usage error (exit 2), never a traceback.

The commands are enumerated from the typer app itself, so a command added later is checked too.
"""

from __future__ import annotations

import pytest
import typer

from precimed.cli import app


def _command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-group of the click tree behind the typer app, as the words a user types."""
    paths = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        path = (*prefix, name)
        paths.append(path)
        paths.extend(_command_paths(command, path))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_enumeration_finds_every_command_and_subcommand():
    """The walk sees the top-level commands and the sub-commands of each group (a walk that finds nothing
    would make the test below pass vacuously)."""
    assert {("train",), ("predict",), ("monitor",), ("deidentify",), ("serve",)} <= set(COMMANDS)
    assert {("ward", "simulate"), ("registry", "add"), ("tokens", "create"), ("audit", "verify")} <= set(COMMANDS)
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("words", [(), *COMMANDS], ids=lambda w: " ".join(w) or "precimed")
def test_a_mistyped_option_is_a_short_usage_error_with_exit_2(run_cli, words):
    code, out, err = run_cli(*words, "--bogus")
    text = out + err
    assert code == 2, text
    assert "Traceback" not in text and "File \"" not in text
    assert "No such option: --bogus" in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3, err


@pytest.mark.parametrize("words", [("predict", "b", "--input", "x.csv", "--output", "o.csv", "--top", "3"),
                                   ("ward", "simulate", "--out", "w", "--patients", "many"),
                                   ("train",)])
def test_a_bad_value_or_a_missing_argument_is_a_usage_error_too(run_cli, words):
    code, out, err = run_cli(*words)
    assert code == 2 and "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("Error:")
