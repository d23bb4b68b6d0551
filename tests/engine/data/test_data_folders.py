"""File-backed datasets: imagefolder on tiny folders made here, CIFAR/STL layouts, the real CIFAR-10 JPEGs."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import ConfigError, DataError
from engine.data import decode_image, load_dataset, resolve_root
from engine.data.torchvision_layouts import CIFAR10_JPEG_FALLBACK, read_batch

CIFAR10_JPEG = CIFAR10_JPEG_FALLBACK.resolve()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUILAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EQUILAB_DATA_ROOT", raising=False)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels: a decompression bomb without the pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def make_folder(root: Path) -> Path:
    """root/train/{cat,dog}/ with 2 + 3 images and a stray README that must be ignored."""
    write_image(root / "train" / "cat" / "a.png", (255, 0, 0))
    write_image(root / "train" / "cat" / "b.jpg", (250, 0, 0))
    for i in range(3):
        write_image(root / "train" / "dog" / f"{i}.png", (0, 0, 255), size=(8, 12))
    (root / "train" / "dog" / "README.txt").write_text("not an image")
    return root


def test_imagefolder_reads_classes_paths_and_resizes(tmp_path):
    root = make_folder(tmp_path / "pets")
    d = load_dataset("imagefolder", "train", root, image_size=8)
    assert d.classes == ("cat", "dog") and d.images.shape == (5, 8, 8, 3)
    assert d.labels.tolist() == [0, 0, 1, 1, 1] and d.labels.dtype == np.int64
    assert d.meta["path"].tolist() == ["cat/a.png", "cat/b.jpg", "dog/0.png", "dog/1.png", "dog/2.png"]
    assert tuple(d.images[0, 4, 4]) == (255, 0, 0) and tuple(d.images[4, 4, 4]) == (0, 0, 255)
    assert d.class_counts() == {"cat": 2, "dog": 3}


def test_imagefolder_without_split_folder(tmp_path):
    write_image(tmp_path / "flat" / "x" / "1.png", (1, 2, 3))
    d = load_dataset("imagefolder", root=tmp_path / "flat")
    assert d.classes == ("x",) and d.images.shape == (1, 32, 32, 3)
    with pytest.raises(DataError, match=r"no 'test' sub-folder"):
        load_dataset("imagefolder", "test", tmp_path / "flat")


def test_root_from_environment(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    monkeypatch.setenv("EQUILAB_DATA_ROOT", str(root))
    assert len(load_dataset("imagefolder", image_size=4)) == 5


def test_cache_hit_and_rebuild_when_files_change(tmp_path):
    root = make_folder(tmp_path / "pets")
    a = load_dataset("imagefolder", "train", root, image_size=8)
    b = load_dataset("imagefolder", "train", root, image_size=8)
    assert isinstance(b.images, np.memmap) and np.array_equal(a.images, b.images)
    assert len(list((tmp_path / "cache" / "data").iterdir())) == 1
    write_image(root / "train" / "cat" / "c.png", (0, 255, 0))
    c = load_dataset("imagefolder", "train", root, image_size=8)
    assert len(c) == 6 and c.meta["path"][2] == "cat/c.png"
    assert len(list((tmp_path / "cache" / "data").iterdir())) == 2


def test_corrupt_file_is_named(tmp_path):
    root = make_folder(tmp_path / "pets")
    good = (root / "train" / "cat" / "a.png").read_bytes()
    (root / "train" / "dog" / "broken.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "dog" / "zero.jpg").write_bytes(b"")
    (root / "train" / "dog" / "bomb.png").write_bytes(png_header_only(9000, 9000))
    with pytest.raises(DataError) as e:
        load_dataset("imagefolder", "train", root)  # decoded in a thread pool
    msg = str(e.value)
    assert "bomb.png: 9000x9000 = 81,000,000 pixels is over the limit" in msg
    assert (
        "3 of 8 images" in msg
        and "broken.png: starts like a PNG file but its header is truncated" in msg
        and "zero.jpg: empty" in msg
    )


def test_empty_and_classless_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_dataset("imagefolder", root=tmp_path / "empty")
    (tmp_path / "loose").mkdir()
    write_image(tmp_path / "loose" / "a.png", (0, 0, 0))
    with pytest.raises(DataError, match=r"loose has no class sub-folders; expected <root>/<class>/<image>"):
        load_dataset("imagefolder", root=tmp_path / "loose")
    (tmp_path / "hollow" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"class folders \['cat'\] but no image files"):
        load_dataset("imagefolder", root=tmp_path / "hollow")


def test_missing_root_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nowhere'} does not exist")):
        load_dataset("imagefolder", root=tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"pass --data-root DIR .* or set EQUILAB_DATA_ROOT"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="stl10 needs a data root"):
        load_dataset("stl10", "train")


def test_bad_options_and_splits(tmp_path):
    root = make_folder(tmp_path / "pets")
    with pytest.raises(ConfigError, match=r"image_size=0 must be"):
        load_dataset("imagefolder", root=root, image_size=0)
    with pytest.raises(ConfigError, match=r"no option\(s\) \['size'\]; it accepts \['image_size'\]"):
        load_dataset("imagefolder", root=root, size=3)
    with pytest.raises(ConfigError, match=r"split '\.\./pets' must be a plain sub-folder name"):
        load_dataset("imagefolder", "../pets", root / "train")
    with pytest.raises(ConfigError, match=r"cifar10 has no split 'val'"):
        load_dataset("cifar10", "val", root)
    with pytest.raises(ConfigError, match=r"stl10 has no split 'extra'"):
        load_dataset("stl10", "extra", root)


def test_cifar10_root_holding_neither_layout(tmp_path):
    with pytest.raises(DataError, match="neither CIFAR-10 layout"):
        load_dataset("cifar10", "train", tmp_path)


def write_pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def fake_cifar_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images [n, 32, 32, 3] and CIFAR's row layout [n, 3072] (all red, then green, then blue)."""
    img = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return img, img.transpose(0, 3, 1, 2).reshape(n, 3072)


def test_cifar10_pickle_layout(tmp_path):
    folder = tmp_path / "tv" / "cifar-10-batches-py"
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names})
    expected = []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        img, rows = fake_cifar_rows(4, i)
        write_pickle(folder / name, {b"data": rows, b"labels": [i % 10, 1, 2, 3], b"batch_label": b"x"})
        expected.append(img)
    train = load_dataset("cifar10", "train", tmp_path / "tv")
    assert train.images.shape == (20, 32, 32, 3) and train.classes == tuple(names)
    assert np.array_equal(train.images, np.concatenate(expected[:5]))
    assert train.labels[:4].tolist() == [0, 1, 2, 3]
    test = load_dataset("cifar10", "test", folder)  # the batches folder itself works too
    assert np.array_equal(test.images, expected[5])


def test_cifar100_pickle_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    write_pickle(
        folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": []}
    )
    img, rows = fake_cifar_rows(3, 7)
    for split in ("train", "test"):
        write_pickle(folder / split, {"data": rows, "fine_labels": [5, 99, 0], "coarse_labels": [1, 19, 0]})
    d = load_dataset("cifar100", "test", tmp_path)
    assert np.array_equal(d.images, img) and d.labels.tolist() == [5, 99, 0] and len(d.classes) == 100
    assert d.meta["coarse_label"].tolist() == [1, 19, 0]


def test_hostile_pickle_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "batch"
    write_pickle(bad, {"data": Boom()})
    with pytest.raises(DataError, match=r"not a readable CIFAR batch \(UnpicklingError: refusing to load"):
        read_batch(bad)


def test_stl10_layout(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    rng = np.random.default_rng(0)
    imgs = {
        s: rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8) for s, n in [("train", 3), ("unlabeled", 2)]
    }
    for split, img in imgs.items():
        # the file stores each image as 3 channels of column-major 96x96 planes
        (folder / f"{split}_X.bin").write_bytes(img.transpose(0, 3, 2, 1).tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 5]))
    d = load_dataset("stl10", "train", tmp_path)
    assert np.array_equal(d.images, imgs["train"]) and d.labels.tolist() == [0, 9, 4]
    assert d.classes == tuple(f"c{i}" for i in range(10))
    u = load_dataset("stl10", "unlabeled", tmp_path)
    assert np.array_equal(u.images, imgs["unlabeled"]) and u.labels.tolist() == [-1, -1]
    with pytest.raises(DataError, match=r"no stl10_binary/test_X\.bin"):
        load_dataset("stl10", "test", tmp_path)


def test_cifar10_fallback_root_is_the_shared_copy():
    if not CIFAR10_JPEG.is_dir():
        pytest.skip(f"{CIFAR10_JPEG} is absent: the real CIFAR-10 JPEG copy is not on this machine")
    assert resolve_root("cifar10", None, fallback=CIFAR10_JPEG_FALLBACK) == CIFAR10_JPEG


def test_cifar10_jpeg_reads_all_60000(tmp_path):
    cache = tmp_path / "cache"
    if not CIFAR10_JPEG.is_dir():
        pytest.skip(f"{CIFAR10_JPEG} is absent: the real CIFAR-10 JPEG copy is not on this machine")
    counts = {}
    try:
        for split, per_class in (("train", 5000), ("test", 1000)):
            d = load_dataset("cifar10", split, CIFAR10_JPEG)
            assert d.images.shape == (10 * per_class, 32, 32, 3) and d.images.dtype == np.uint8
            assert set(d.class_counts().values()) == {per_class}
            assert d.classes[0] == "airplane" and d.classes[-1] == "truck"
            assert d.meta["path"][0] == "airplane/0000.jpg"
            assert 60 < float(d.images[:500].mean()) < 200  # real photos, not blank decodes
            counts[split] = len(d)
        assert counts == {"train": 50_000, "test": 10_000}
        again = load_dataset("cifar10", "test", CIFAR10_JPEG)  # served from the cache, not decoded again
        assert isinstance(again.images, np.memmap) and np.array_equal(again.images[::97], d.images[::97])
        assert np.array_equal(again.images[0], decode_image(CIFAR10_JPEG / "test" / "airplane" / "0000.jpg"))
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # 180 MB: do not leave it in pytest's kept tmp dirs
