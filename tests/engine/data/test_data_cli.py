"""``python -m engine data info|preview`` through the real argparse CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.cli import build_parser, main


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EQUILAB_DATA_ROOT", raising=False)


def test_info_shapes(capsys):
    assert main(["data", "info", "--dataset", "shapes", "-o", "size=40", "-o", "seed=2"]) == 0
    out = capsys.readouterr().out
    assert "shapes/train: 40 images of 32x32, 10 classes" in out
    assert "shapes/test: 40 images of 32x32" in out
    assert "angle       range 0 .. 360" in out and "'square': 4" in out
    assert "  circle               4" in out


def test_info_one_split_of_a_folder(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (5, 5)).save(tmp_path / "imgs" / cls / "1.png")
    argv = [
        "data",
        "info",
        "--dataset",
        "imagefolder",
        "--split",
        "train",
        "--data-root",
        str(tmp_path / "imgs"),
    ]
    assert main([*argv, "-o", "image_size=16"]) == 0
    out = capsys.readouterr().out
    assert "imagefolder/train: 2 images of 16x16, 2 classes" in out and "meta columns: ['path']" in out
    # without --split: train is read, the missing test split is reported, not fatal
    assert main(["data", "info", "--dataset", "imagefolder", "--data-root", str(tmp_path / "imgs")]) == 0
    out = capsys.readouterr().out
    assert "imagefolder/train: 2 images of 32x32" in out and "imagefolder/test: not available" in out


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["data", "info", "--dataset", "stl10"]) == 2
    assert "error: stl10 needs a data root: pass --data-root DIR" in capsys.readouterr().err
    assert main(["data", "info", "-o", "colour=red"]) == 2
    assert "no option(s) ['colour']" in capsys.readouterr().err
    assert main(["data", "info", "-o", "size"]) == 2
    assert "must look like KEY=VALUE" in capsys.readouterr().err
    assert main(["data", "info", "--dataset", "cifar10", "--data-root", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_preview_writes_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = [
        "data",
        "preview",
        "--dataset",
        "shapes",
        "-o",
        "size=30",
        "--out",
        str(out),
        "--n",
        "9",
        "--seed",
        "1",
    ]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * (64 + 12), 3 * 64, 3)  # 3x3 tiles of 2x-upscaled 32 px plus a caption row
    caption = grid[64:76, :64]
    assert (caption < 128).any() and (caption == 255).any()  # black text on white
    again = tmp_path / "again.png"
    assert main([*argv[:-5], str(again), "--n", "9", "--seed", "1"]) == 0
    assert np.array_equal(np.asarray(Image.open(again)), grid)


def test_help_explains_every_option():
    parser = build_parser()
    data = parser._subparsers._group_actions[0].choices["data"]
    for name, cmd in data._subparsers._group_actions[0].choices.items():
        for action in cmd._actions:
            assert action.help, f"data {name} {action.option_strings} has no help text"
