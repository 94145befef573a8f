"""JPEG decoding with libjpeg-turbo through ``simplejpeg``, pixel for pixel what Pillow gives.

Hashing a thumbnail through Pillow spends more time in Python (``Image.open`` parses the
markers in Python, ``load``, the EXIF transpose, two mode conversions) than in libjpeg, and
all of that holds the GIL, so a second worker thread added little. ``simplejpeg`` reads the
header and decodes in C with the GIL released; what is left in Python here is one walk over
the marker segments for the EXIF orientation.

:func:`decode` answers only when it can give exactly the pixels the Pillow path
(:func:`semsearch.images.io.decode_image`) gives, and returns ``None`` otherwise so that the
caller falls back to Pillow, which also owns every error message:

- baseline or progressive JPEGs in YCbCr or grey (CMYK, YCCK and RGB-coded JPEGs fall back);
- no MPO (multi-picture) segment, whose files Pillow opens as another format;
- the orientation is known: EXIF IFD0's Orientation as a SHORT, or none at all. An
  orientation only in XMP, or EXIF that does not parse, falls back;
- the pixel count within ``max_pixels`` and Pillow's own decompression-bomb limit;
- libjpeg-turbo reports no warning (``strict``): a truncated or corrupt file falls back.

The scale: Pillow's ``draft`` picks 1/2, 1/4 or 1/8 (the largest keeping both sides >=
``draft``); libjpeg-turbo's scaled sizes (ceil) and IDCT are the same, so the scaled pixels
agree. Tested against Pillow for sizes, subsamplings, progressive files, grey JPEGs and all
eight orientations (``tests/images/test_jpeg.py``).
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
_EXIF = b"Exif\x00\x00"
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_SOS, _APP1, _APP2 = 0xDA, 0xE1, 0xE2
_ORIENTATION_TAG = 0x0112


@functools.lru_cache(maxsize=1)
def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError:
        logger.debug("simplejpeg is not installed; JPEGs are decoded by Pillow")
        return None
    return simplejpeg


def available() -> bool:
    return _simplejpeg() is not None


def exif_orientation(exif: bytes) -> int | None:
    """The Orientation of EXIF IFD0 (1 when absent); None when the block does not parse
    simply (the caller then lets Pillow read it)."""
    tiff = exif[len(_EXIF):] if exif.startswith(_EXIF) else exif
    if tiff[:4] == b"II*\x00":
        end = "<"
    elif tiff[:4] == b"MM\x00*":
        end = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack_from(end + "I", tiff, 4)
        (count,) = struct.unpack_from(end + "H", tiff, ifd)
        found = []
        for i in range(count):
            tag, typ, n = struct.unpack_from(end + "HHI", tiff, ifd + 2 + 12 * i)
            if tag == _ORIENTATION_TAG:
                if typ != 3 or n != 1:  # not a single SHORT
                    return None
                found.append(struct.unpack_from(end + "H", tiff, ifd + 2 + 12 * i + 8)[0])
    except struct.error:
        return None
    if len(found) > 1:
        return None
    return found[0] if found else 1


def _segments_orientation(data: bytes) -> int | None:
    """Walk the marker segments up to the first scan; the EXIF orientation as Pillow would
    apply it, or None where this walk cannot be sure."""
    pos, exif, xmp = 2, b"", False
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _SOS:
            break
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # standalone markers: unusual here
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == _APP1 and body.startswith(_EXIF):
            exif = exif + body[6:] if exif else body  # Pillow joins repeated EXIF segments
        elif marker == _APP1 and body.startswith(_XMP):
            xmp = True
        elif marker == _APP2 and body.startswith(b"MPF\x00"):
            return None  # Pillow opens multi-picture files as MPO
        pos += 2 + length
    else:
        return None  # no scan found
    orientation = exif_orientation(exif) if exif else 1
    if orientation == 1 and xmp:
        return None  # Pillow would look for tiff:Orientation in the XMP packet
    return orientation


def draft_scale(width: int, height: int, side: int) -> int:
    """The scale Pillow's ``JpegImageFile.draft`` picks for ``(side, side)``."""
    scale = min(width // side, height // side)
    for s in (8, 4, 2, 1):
        if scale >= s:
            return s
    return 1


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``ImageOps.exif_transpose`` on an array (rows first): the same eight transpositions."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(pixels)) if op is not None else pixels


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """(h, w) grey -> (h, w, 3), the grey on every channel (Pillow's ``L`` -> ``RGB``)."""
    return np.repeat(grey[:, :, None], 3, axis=2)


def rgb_to_l(rgb: np.ndarray) -> np.ndarray:
    """Pillow's ``convert("L")`` of 8-bit RGB (ITU-R 601-2 luma, its fixed-point rounding)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    return np.asarray(Image.frombuffer("RGB", (w, h), np.ascontiguousarray(rgb), "raw", "RGB", 0, 1).convert("L"))


def decode(
    data: bytes, *, max_pixels: int, draft: int | None = None, mode: Literal["L", "RGB", "luma"] = "RGB",
) -> np.ndarray | None:
    """The pixels the Pillow path gives for this JPEG, or None (see the module doc).

    ``mode``: ``"RGB"`` = ``decode_image(draft=draft)`` as an (h, w, 3) array; ``"L"`` = the
    same converted with ``convert("L")``; ``"luma"`` = ``decode_image(draft=draft,
    draft_grey=True).convert("L")``: the luma channel alone, what libjpeg gives for a draft in
    mode L (needs ``draft``). EXIF orientation applied."""
    sj = _simplejpeg()
    if sj is None or not data.startswith(JPEG_MAGIC):
        return None
    if mode == "luma" and draft is None:
        raise ValueError("mode 'luma' needs a draft size")
    try:
        height, width, colorspace, _ = sj.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or width * height > max_pixels:
        return None
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and width * height > 2 * Image.MAX_IMAGE_PIXELS:
        return None  # Pillow refuses it with its own error
    orientation = _segments_orientation(data)
    if orientation is None:
        return None
    s = draft_scale(width, height, draft) if draft is not None else 1
    size = (-(-height // s), -(-width // s))
    colour = "GRAY" if mode == "luma" or colorspace == "Gray" else "RGB"
    try:
        pixels = sj.decode_jpeg(data, colour, min_height=size[0], min_width=size[1], strict=True)
    except ValueError:  # libjpeg-turbo warned or failed: Pillow decides what the file is
        return None
    if pixels.shape[:2] != size:
        return None
    if colour == "GRAY":
        grey = pixels[:, :, 0]
        out = grey_to_rgb(grey) if mode == "RGB" else grey
    else:
        out = rgb_to_l(pixels) if mode in ("L", "luma") else pixels
    return orient(out, orientation)
