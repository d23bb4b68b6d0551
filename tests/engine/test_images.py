"""decode_image / to_square on a corpus of awkward and broken files made on the spot."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.data import decode_image, to_square
from engine.errors import DataError


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (a cheap decompression bomb: no pixel data is needed to test)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_rgb_jpeg_and_png_roundtrip(tmp_path):
    arr = noise(20, 30)
    assert np.array_equal(decode_image(encode(Image.fromarray(arr), "PNG")), arr)
    path = tmp_path / "x.png"
    path.write_bytes(encode(Image.fromarray(arr), "PNG"))
    assert np.array_equal(decode_image(path), arr)
    assert np.array_equal(decode_image(str(path)), arr)
    smooth = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    got = decode_image(encode(Image.fromarray(smooth), "JPEG", quality=95))
    assert got.shape == (16, 16, 3) and np.abs(got.astype(int) - smooth).max() <= 4


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        decode_image(b"")
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.jpg: empty file \(0 bytes\)"):
        decode_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: cannot read"):
        decode_image(tmp_path / "nope.png")


def test_random_bytes_named_jpg(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=r"photo.jpg: not a supported image"):
        decode_image(p)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(fmt):
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    with pytest.raises(DataError, match=f"truncated or corrupt {fmt} data"):
        decode_image(data[: len(data) // 2])


def test_formats_outside_the_raster_list_are_refused():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL would run Ghostscript
    with pytest.raises(DataError, match="not a supported image"):
        decode_image(eps)
    ico = encode(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(DataError, match="not a supported image"):
        decode_image(ico)
    mpo = Image.new("RGB", (8, 6), (200, 0, 0))  # phone cameras' multi-picture JPEG: first frame
    got = decode_image(encode(mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 6))]))
    assert got.shape == (6, 8, 3) and np.abs(got[3, 4].astype(int) - (200, 0, 0)).max() <= 4
    tiff = decode_image(encode(Image.new("RGB", (3, 2), (4, 5, 6)), "TIFF"))
    assert tiff.shape == (2, 3, 3) and tuple(tiff[1, 2]) == (4, 5, 6)


def test_truncated_header_is_called_damaged_not_foreign():
    data = encode(Image.new("RGB", (12, 8)), "PNG")
    with pytest.raises(DataError, match="starts like a PNG file but its header is truncated or corrupt"):
        decode_image(data[:30])


def test_corrupt_png_checksum():
    data = bytearray(encode(Image.fromarray(noise(32, 32)), "PNG"))
    data[60] ^= 0xFF  # inside the IDAT payload: zlib stream and CRC no longer match
    with pytest.raises(DataError, match="truncated or corrupt PNG"):
        decode_image(bytes(data))


@pytest.mark.parametrize(
    ("side", "needle"),
    [
        (8000, "64,000,000 pixels is over the limit of 40,000,000"),  # our own budget
        (10_000, "decompression bomb"),  # PIL's DecompressionBombWarning, turned into an error
        (20_000, "decompression bomb"),  # PIL's DecompressionBombError
    ],
)
def test_decompression_bombs(side, needle):
    with pytest.raises(DataError, match=needle):
        decode_image(png_header_only(side, side))


def test_low_pixel_limit_reports_size_and_limit():
    data = encode(Image.new("RGB", (200, 100)), "PNG")
    with pytest.raises(DataError, match=r"200x100 = 20,000 pixels is over the limit of 5,000"):
        decode_image(data, max_pixels=5000)
    assert decode_image(data, max_pixels=20_000).shape == (100, 200, 3)


def test_16bit_grayscale_is_scaled_not_clipped():
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    img = Image.fromarray(ramp)  # I;16
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    got = decode_image(data)
    assert got.shape == (16, 16, 3)
    assert np.array_equal(got[..., 0], np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert np.array_equal(got[..., 0], got[..., 2])


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    got = decode_image(data)
    assert got.shape == (16, 16, 3)
    assert np.abs(got[8, 8].astype(int) - (255, 0, 0)).max() <= 6


def test_palette_png_with_transparency_on_white():
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    pal.putpixel((0, 0), 1)
    data = encode(pal, "PNG", transparency=0)  # index 0 (red) is fully transparent
    got = decode_image(data)
    assert tuple(got[0, 0]) == (0, 0, 255)
    assert tuple(got[2, 2]) == (255, 255, 255)
    assert tuple(decode_image(data, background=(0, 0, 0))[2, 2]) == (0, 0, 0)


def test_rgba_and_la_composited():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (255, 0, 0, 128)
    got = decode_image(encode(Image.fromarray(rgba), "PNG"))
    assert np.abs(got[0, 0].astype(int) - (255, 127, 127)).max() <= 1
    got_black = decode_image(encode(Image.fromarray(rgba), "PNG"), background=(0, 0, 0))
    assert np.abs(got_black[0, 0].astype(int) - (128, 0, 0)).max() <= 1
    la = Image.fromarray(np.dstack([np.full((4, 4), 0, np.uint8), np.full((4, 4), 0, np.uint8)]), "LA")
    assert tuple(decode_image(encode(la, "PNG"))[1, 1]) == (255, 255, 255)  # fully transparent -> white


def test_grayscale_and_1bit():
    gray = decode_image(encode(Image.new("L", (5, 3), 77), "PNG"))
    assert gray.shape == (3, 5, 3) and np.all(gray == 77)
    one = decode_image(encode(Image.new("1", (5, 3), 1), "PNG"))
    assert np.all(one == 255)


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    arr[:, 20:] = (0, 0, 255)  # right half blue
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    got = decode_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert got.shape == (40, 20, 3)  # portrait after rotation
    assert got[5, 10, 0] > 200 and got[5, 10, 2] < 60  # the red left half is now on top
    assert got[35, 10, 2] > 200 and got[35, 10, 0] < 60


def test_tiny_and_extreme_aspect():
    one = decode_image(encode(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG"))
    assert one.shape == (1, 1, 3) and tuple(one[0, 0]) == (9, 8, 7)
    assert to_square(one, 32).shape == (32, 32, 3) and np.all(to_square(one, 32) == (9, 8, 7))
    with pytest.raises(DataError, match=r"1x1 pixels is too small; at least 8 pixels per side"):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), min_side=8)
    wide = decode_image(encode(Image.new("RGB", (10_000, 10), (1, 2, 3)), "PNG"))
    assert wide.shape == (10, 10_000, 3)
    sq = to_square(wide, 32)
    assert sq.shape == (32, 32, 3) and np.all(sq == (1, 2, 3))


def test_to_square_centre_crops():
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, 20:40] = 255  # the centre 20x20 square is white, the sides black
    assert np.array_equal(to_square(arr, 20), np.full((20, 20, 3), 255, np.uint8))
    small = to_square(arr, 10)
    assert small.shape == (10, 10, 3) and small.min() >= 250
    with pytest.raises(DataError, match="image size 0"):
        to_square(arr, 0)
