"""Safe image decoding shared by the folder datasets and the app's uploads.

:func:`decode_image` turns bytes or a file into ``uint8 [H, W, 3]`` RGB or raises :class:`DataError` saying what
is wrong with the file. It forces a full decode (``img.load()``), so a truncated JPEG/PNG fails here rather than
later as grey padding (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never enabled), refuses images over a pixel budget
before decoding them (decompression bombs), applies EXIF orientation, and converts every PIL mode to RGB:

* 16/32-bit grayscale (``I;16``, ``I``, ``F``) is scaled to 8 bits, not clipped;
* palette, CMYK, YCbCr, 1-bit and grayscale go through PIL's converters;
* anything with transparency (RGBA, LA, PA, palette or RGB with ``tRNS``) is composited on a flat background,
  **white** by default (``background=(255, 255, 255)``), as browsers and viewers show it.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.core.errors import DataError

# Raster formats only (JPEG covers MPO phone photos): PIL hands EPS to an external program (Ghostscript).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: any real photo; far below PIL's own bomb limit (~89 MP)
WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GRAY = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Magic numbers, so a file that starts like an image but cannot be opened is called damaged, not "not an image".
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def _label(data: bytes | str | Path) -> str:
    return str(data) if isinstance(data, str | Path) else f"image ({len(data)} bytes)"


def _read(data: bytes | str | Path, label: str) -> bytes:
    if isinstance(data, str | Path):
        try:
            return Path(data).read_bytes()
        except OSError as e:
            raise DataError(
                f"{label}: cannot read ({e.strerror or e}); check the path and permissions."
            ) from e
    return bytes(data)


def _open_strict(raw: bytes) -> Image.Image:
    """``Image.open`` with PIL's bomb *warning* raised as an error.

    ``warnings.catch_warnings`` swaps process-wide state, which threads racing through it can leave changed, so
    it is used on the main thread only; in decoding pools the ``max_pixels`` check below (40 MP, under PIL's own
    89 MP warning level) refuses such images anyway, and PIL's hard DecompressionBombError is caught everywhere.
    """
    Image.init()  # register every plugin (idempotent): ``formats=`` looks them up by name
    if threading.current_thread() is not threading.main_thread():
        return Image.open(io.BytesIO(raw), formats=FORMATS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(raw), formats=FORMATS)


def _open(raw: bytes, label: str, max_pixels: int) -> Image.Image:
    """Open (header only) and check the pixel budget before any pixel data is decoded."""
    try:
        img = _open_strict(raw)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{label}: refused as a decompression bomb ({e}); use a smaller image.") from e
    except UnidentifiedImageError as e:
        kind = next((k for sig, k in _SIGNATURES.items() if raw.startswith(sig)), None)
        if kind:
            raise DataError(
                f"{label}: starts like a {kind} file but its header is truncated or corrupt; "
                "re-export or re-download the file."
            ) from e
        raise DataError(
            f"{label}: not a supported image (first bytes {raw[:8]!r}); "
            "use a JPEG, PNG, BMP, GIF, WebP, TIFF or PPM file."
        ) from e
    except Exception as e:  # malformed headers raise many types (SyntaxError, struct.error, ...)
        raise DataError(f"{label}: corrupt image header ({type(e).__name__}: {e}).") from e
    w, h = img.size
    if w * h > max_pixels:
        raise DataError(
            f"{label}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} pixels "
            "(possible decompression bomb); resize the image or raise max_pixels."
        )
    return img


def _load(img: Image.Image, label: str) -> Image.Image:
    """Decode every pixel now, so truncation is reported here, then apply the EXIF orientation."""
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{label}: refused as a decompression bomb ({e}); use a smaller image.") from e
    except Exception as e:  # OSError "image file is truncated", SyntaxError "broken PNG file", ...
        raise DataError(
            f"{label}: truncated or corrupt {img.format or 'image'} data ({type(e).__name__}: {e}); "
            "re-export or re-download the file."
        ) from e
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # a malformed EXIF block must not cost the pixels: keep the stored orientation
        return img


def _wide_gray_to_l(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit grayscale to 8-bit by scaling (PIL's own convert("L") clips at 255)."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if np.nanmax(a, initial=0.0) <= 1.0 else a
    elif img.mode == "I" and int(a.max(initial=0)) > 65535:
        a = a.astype(np.float64) / (float(a.max()) / 255.0)
    else:  # I;16 and I holding 16-bit values
        a = a.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if img.mode in _WIDE_GRAY:
        img = _wide_gray_to_l(img)
    if img.mode == "P" or (img.mode in {"L", "RGB", "1"} and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(
    data: bytes | str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
    background: tuple[int, int, int] = WHITE,
) -> np.ndarray:
    """Decode an image file or its bytes to ``uint8 [H, W, 3]`` RGB.

    Args:
        data: encoded bytes, or a path to read.
        max_pixels: refuse images with more pixels than this (decompression bombs), checked before decoding.
        min_side: refuse images whose width or height is below this many pixels.
        background: RGB colour that transparent pixels are composited on (white by default).

    Raises:
        DataError: empty input, not an image, truncated/corrupt data, too many or too few pixels.
    """
    label = _label(data)
    raw = _read(data, label)
    if not raw:
        raise DataError(f"{label}: empty file (0 bytes); pick a non-empty image file.")
    img = _open(raw, label, max_pixels)
    w, h = img.size
    if min(w, h) < min_side:
        raise DataError(f"{label}: {w}x{h} pixels is too small; at least {min_side} pixels per side needed.")
    img = _load(img, label)
    try:
        rgb = _to_rgb(img, background)
    except Exception as e:
        raise DataError(f"{label}: cannot convert mode {img.mode!r} to RGB ({type(e).__name__}: {e}).") from e
    out = np.asarray(rgb, dtype=np.uint8)
    if out.ndim != 3 or out.shape[2] != 3:
        raise DataError(
            f"{label}: decoded to shape {out.shape}, expected [H, W, 3]; re-save the image as RGB."
        )
    return np.ascontiguousarray(out)


def to_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``uint8 [H, W, 3]`` to a square and resize it to ``[size, size, 3]`` (bicubic, antialiased)."""
    if size < 1:
        raise DataError(f"image size {size} must be a positive number of pixels.")
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(img[top : top + side, left : left + side])
    if side == size:
        return crop
    pil = Image.fromarray(crop)
    # reducing_gap: shrink by whole factors first (fast, exact box filter), then a bicubic finish
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0), dtype=np.uint8)
