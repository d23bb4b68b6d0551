"""``python -m engine augment preview`` end to end on an image file."""

import numpy as np
from PIL import Image

from engine.cli import main


def test_preview_writes_strip_and_prints_vectors(tmp_path, capsys):
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src)
    out = tmp_path / "preview.png"
    argv = [
        "augment",
        "preview",
        "--image",
        str(src),
        "--n",
        "3",
        "--seed",
        "0",
        "--zoom",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with Image.open(out) as im:
        assert im.size == (4 * 64 + 3 * 2, 64) and im.mode == "RGB"  # original + 3 views, 32 px x zoom 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1:7] == ["i", "j", "h", "w", "flip", "jitter"]
    assert len(lines[0].split()) == 16 and len(lines) == 5  # header, 3 rows, "wrote ..."
    assert main([*argv[:-1], str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()  # same seed, same picture


def test_preview_unreadable_image_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["augment", "preview", "--image", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert "bad.png" in capsys.readouterr().err
