"""Robust image loading: one typed error per bad file, never a crash of the batch.

:func:`load_image` returns an 8-bit RGB :class:`PIL.Image.Image` whatever the file holds
(CMYK, 16-bit grey, palette with transparency, alpha, animated GIF: first frame) with its
EXIF orientation applied. The pixel count is checked from the header before decoding
(decompression-bomb guard). :func:`resolve_image_path` keeps paths inside configured roots.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from semsearch.errors import BadInput

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)


class ImageError(BadInput):
    """An image file cannot be used; ``kind`` says why in one word."""

    kind = "unreadable"

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ImageNotFound(ImageError):
    kind = "not-found"


class ImageOutsideRoots(ImageError):
    kind = "outside-roots"


class EmptyImageFile(ImageError):
    kind = "empty"


class NotAnImage(ImageError):
    kind = "not-an-image"


class ImageTooLarge(ImageError):
    kind = "too-large"


class ImageUnreadable(ImageError):
    kind = "unreadable"


def resolve_image_path(path: str | Path, roots: Sequence[Path], *, base: Path | None = None) -> Path:
    """Resolve ``path`` (relative paths against ``base``) and check it lies inside one of
    ``roots`` after following symlinks and ``..``. Raises :class:`ImageOutsideRoots`."""
    return RootGuard(roots).resolve(path, base=base)


class RootGuard:
    """:func:`resolve_image_path` for many files: the roots are resolved once, and each
    directory's real path once (a bulk run's files share few directories). A file name that
    is itself a symlink, ``.`` or ``..`` is resolved in full, so the answer is always that of
    ``os.path.realpath``."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self._dirs: dict[str, str] = {}

    def resolve(self, path: str | Path, *, base: Path | None = None) -> Path:
        p = os.fspath(path)
        if not os.path.isabs(p) and base is not None:
            p = os.path.join(base, p)
        head, name = os.path.split(p)
        real_dir = self._dirs.get(head)
        if real_dir is None:
            real_dir = self._dirs[head] = os.path.realpath(head or ".")
        real = os.path.join(real_dir, name)
        if name in ("", ".", "..") or os.path.islink(real):
            real = os.path.realpath(p)
        if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots):
            raise ImageOutsideRoots(
                path, f"resolves to {real}, outside the allowed image roots {self.roots}"
            )
        return Path(real)


def _to_rgb(im: Image.Image) -> Image.Image:
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64) if mode != "I" else np.asarray(im, dtype=np.int64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(np.asarray(arr, np.float64) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "P":
        return im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # CMYK (Pillow's inverting conversion), YCbCr, LAB, HSV, 1, L


def _check_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise ImageNotFound(path, "file does not exist") from e
    except OSError as e:
        raise ImageUnreadable(path, f"cannot stat: {e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise ImageNotFound(path, "not a regular file")
    if st.st_size == 0:
        raise EmptyImageFile(path, "file is empty (0 bytes)")


def _turbo_pixels(
    path: Path, *, max_pixels: int, draft: int | None, mode: Literal["L", "RGB", "luma"],
) -> np.ndarray | None:
    """What :func:`semsearch.images.jpeg.decode` gives for ``path`` when it is a plain JPEG
    and libjpeg-turbo is there; else None, and Pillow decodes it. Only the magic bytes are
    read of a file that is not a JPEG."""
    from semsearch.images import jpeg

    if not jpeg.available():
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(len(jpeg.JPEG_MAGIC))
            if head != jpeg.JPEG_MAGIC:
                return None
            data = head + f.read()
    except OSError:
        return None  # Pillow's path reports it
    return jpeg.decode(data, max_pixels=max_pixels, draft=draft, mode=mode)


def load_image(
    path: str | Path, *, max_pixels: int = 89_478_485, draft: int | None = None, draft_grey: bool = False,
    turbo: bool = True,
) -> Image.Image:
    """Decode one image file into 8-bit RGB, EXIF orientation applied (see module doc).

    ``draft``: for JPEGs, let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT-domain scaling)
    as long as both sides stay >= ``draft`` pixels. Several times faster on large photos;
    pixels then differ slightly from a full decode + resize (see docs/images.md).
    ``draft_grey``: with ``draft``, decode a colour JPEG's luma channel only (no colour
    conversion; the RGB returned is that grey on all three channels).
    ``turbo``: decode plain JPEGs with libjpeg-turbo through simplejpeg, which gives the
    same pixels with less Python (:mod:`semsearch.images.jpeg`); others go to Pillow."""
    from PIL import Image

    from semsearch.images.jpeg import grey_to_rgb

    path = Path(path)
    _check_file(path)
    mode: Literal["luma", "RGB"] = "luma" if draft is not None and draft_grey else "RGB"
    px = _turbo_pixels(path, max_pixels=max_pixels, draft=draft, mode=mode) if turbo else None
    if px is not None:
        return Image.fromarray(grey_to_rgb(px) if px.ndim == 2 else px, "RGB")
    return decode_image(path, path, max_pixels=max_pixels, draft=draft, draft_grey=draft_grey)


def load_grey(
    path: str | Path, *, max_pixels: int = 89_478_485, draft: int | None = None, turbo: bool = True,
) -> np.ndarray:
    """The 8-bit grey pixels (h, w) perceptual hashes are computed from:
    ``load_image(path, draft=draft, draft_grey=draft is not None).convert("L")``, without
    the round trip through RGB when libjpeg-turbo decodes the file."""
    path = Path(path)
    _check_file(path)
    mode: Literal["luma", "L"] = "luma" if draft is not None else "L"
    px = _turbo_pixels(path, max_pixels=max_pixels, draft=draft, mode=mode) if turbo else None
    if px is not None:
        return px
    img = decode_image(path, path, max_pixels=max_pixels, draft=draft, draft_grey=draft is not None)
    return np.asarray(img.convert("L"))


def decode_image(
    source: str | Path | BinaryIO, label: str | Path, *, max_pixels: int = 89_478_485,
    draft: int | None = None, draft_grey: bool = False, formats: Sequence[str] | None = None,
    limit_name: str = "images.max_pixels",
) -> Image.Image:
    """Decode ``source`` (a path or a binary file object, e.g. an upload) as :func:`load_image`
    does; errors name ``label``. The pixel count is checked from the header before decoding.
    ``formats``: Pillow format names to accept (others raise :class:`NotAnImage`)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = label
    if formats is not None and not formats:
        raise NotAnImage(path, "no image format is accepted")
    try:
        with Image.open(source, formats=list(formats) if formats else None) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLarge(
                    path, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} ({limit_name})"
                )
            animated = getattr(im, "n_frames", 1) > 1
            if animated:
                im.seek(0)  # animated: first frame
            if draft is not None and im.format == "JPEG":
                im.draft("L" if draft_grey else "RGB", (draft, draft))
            im.load()
            # in place: the copy exif_transpose makes otherwise cost ~15% of hashing a thumbnail
            ImageOps.exif_transpose(im, in_place=True)
            out = _to_rgb(im)
            if out is im and animated:
                out = im.copy()  # detach the frame from the multi-frame file closed below
            return out
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(path, f"decompression-bomb guard: {e}") from e
    except UnidentifiedImageError as e:
        raise NotAnImage(path, "not a recognised image format (content does not match any decoder)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # truncated data ("image file is truncated"), broken chunks, bad headers
        raise ImageUnreadable(path, f"cannot decode: {e}") from e
