"""decode_image / to_square on a corpus of awkward and broken files made on the spot."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import DataError
from engine.data import decode_image, to_square


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


# ---- the broken-input corpus, parametrised (issue 7): each file gets a clear error or a correct conversion ----

CORPUS_FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"]
CLEAR = r"image \(\d+ bytes\): (truncated or corrupt|corrupt image header|starts like a)"


@pytest.mark.parametrize("fmt", CORPUS_FORMATS)
@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5, 0.9, "-4", "-1"])
def test_truncated_corpus_errors_or_decodes_the_same_pixels(fmt, keep):
    data = encode(Image.fromarray(noise(24, 24, seed=3)), fmt)
    cut = int(len(data) * keep) if isinstance(keep, float) else len(data) + int(keep)
    try:
        got = decode_image(data[:cut])
    except DataError as e:
        assert re.match(CLEAR, str(e)), str(e)
        return
    # Only a missing trailer may be forgiven (PNG's IEND, GIF's ';'): then every pixel is there, none padded.
    assert keep in ("-4", "-1") and fmt in ("PNG", "GIF"), (fmt, keep)
    assert np.array_equal(got, decode_image(data))


@pytest.mark.parametrize("name", ["empty.jpg", "empty.png", "empty.gif", "empty.webp", "empty.bmp"])
def test_zero_byte_files(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{re.escape(name)}: empty file \(0 bytes\)"):
        decode_image(p)


@pytest.mark.parametrize(
    ("prefix", "needle"),
    [
        (b"", "not a supported image"),  # random bytes named like an image
        (
            b"\x89PNG\r\n\x1a\n",
            "(starts like a PNG file|corrupt image header|corrupt PNG)",
        ),  # a valid signature, then noise
        (b"\xff\xd8\xff", "(starts like a JPEG file|corrupt image header|corrupt JPEG)"),
        (b"GIF89a", "(starts like a GIF file|corrupt image header|corrupt GIF)"),
        (b"BM", "(starts like a BMP file|corrupt image header|corrupt BMP)"),
        (b"II*\x00", "(starts like a TIFF file|corrupt image header|corrupt TIFF)"),
    ],
)
@pytest.mark.parametrize("size", [1, 64, 4096])
def test_random_bytes_with_an_image_name(tmp_path, prefix, needle, size):
    p = tmp_path / "photo.png"
    p.write_bytes(prefix + np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match=rf"photo\.png: .*{needle}"):
        decode_image(p)


def test_bmp_header_bomb_refused_before_decoding():
    bmp = b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
    bmp += struct.pack("<IiiHHIIiiII", 40, 30_000, 30_000, 1, 24, 0, 0, 0, 0, 0, 0)  # 900 MP, no pixel data
    with pytest.raises(DataError, match=r"refused as a decompression bomb"):
        decode_image(bmp)


def test_16bit_rgb_png_keeps_the_high_byte():
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    px = np.array(
        [[[0, 0, 0], [65535, 0, 0], [0, 32768, 0]], [[0, 0, 65535], [257, 514, 771], [65535] * 3]],
        dtype=">u2",
    )
    raw = b"".join(b"\0" + row.tobytes() for row in px)  # filter byte 0 per row
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    got = decode_image(png)
    assert got.dtype == np.uint8 and np.array_equal(got, (px.astype(np.uint32) >> 8).astype(np.uint8))


def test_16bit_and_float_tiff_are_scaled():
    g = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    got = decode_image(encode(Image.fromarray(g), "TIFF"))
    assert np.array_equal(got[..., 1], np.rint(g / 257.0).astype(np.uint8))
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    got = decode_image(encode(Image.fromarray(f), "TIFF"))
    assert np.array_equal(got[..., 0], np.rint(f.astype(np.float64) * 255).astype(np.uint8))


def test_cmyk_tiff_is_exact():
    got = decode_image(encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "TIFF"))
    assert np.all(got == (255, 0, 0))


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP"])
def test_opaque_palette_images(fmt):
    pal = Image.new("P", (3, 2), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    pal.putpixel((2, 1), 1)
    got = decode_image(encode(pal, fmt))
    assert tuple(got[0, 0]) == (10, 20, 30) and tuple(got[1, 2]) == (200, 100, 50)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_rgba_formats_and_rgb_colour_key(fmt):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[:2, :, 3] = 255  # top half opaque blue, bottom half transparent
    got = decode_image(encode(Image.fromarray(rgba), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert np.all(got[:2] == (0, 0, 255)) and np.all(got[2:] == (255, 255, 255))
    keyed = Image.new("RGB", (2, 1), (7, 7, 7))
    keyed.putpixel((1, 0), (1, 2, 3))
    got = decode_image(encode(keyed, "PNG", transparency=(7, 7, 7)))  # tRNS colour key
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[0, 1]) == (1, 2, 3)


EXIF_EXPECTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1],  # mirror top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transpose
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(EXIF_EXPECTED))
def test_every_exif_orientation_exactly(orientation):
    arr = noise(5, 7, seed=orientation)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    got = decode_image(encode(img, "PNG", exif=exif.tobytes()))  # lossless, so pixels compare exactly
    assert np.array_equal(got, EXIF_EXPECTED[orientation](arr))


def test_tall_extreme_aspect():
    tall = decode_image(encode(Image.new("RGB", (10, 10_000), (4, 5, 6)), "PNG"))
    assert tall.shape == (10_000, 10, 3)
    sq = to_square(tall, 32)
    assert sq.shape == (32, 32, 3) and np.all(sq == (4, 5, 6))
