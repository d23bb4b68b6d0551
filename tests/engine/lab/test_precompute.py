"""The precompute command: registered in the CLI, one clear error for a missing folder."""

from __future__ import annotations

from engine.cli import main


def test_precompute_command_is_registered_and_refuses_a_missing_folder(tmp_path, capsys):

    assert main(["precompute", "--stores", str(tmp_path)]) == 0  # an empty folder: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert main(["precompute", "--stores", str(tmp_path / "missing")]) == 2
    assert "is not a folder of stores" in capsys.readouterr().err
