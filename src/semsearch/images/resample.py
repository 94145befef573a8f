"""Pillow's LANCZOS resize of an 8-bit grey image, reproduced exactly as matrix products.

The perceptual hashes need ``img.convert("L").resize((32, 32) and (9, 8), LANCZOS)`` to be
bit-identical to ImageHash. Pillow runs those resizes as scalar C loops, one per target
size, and they were the largest cost of hashing (more than decoding the JPEG). Here each
resize is the same separable filter written as two small matrix products, both target sizes
share the first pass, and BLAS runs them.

Exactness, step by step, against ``libImaging/Resample.c``:

- weights: computed with the same double-precision expressions in the same order (window
  bounds, ``sinc(x) * sinc(x / 3)``, normalisation by their sum), then rounded to Pillow's
  22-bit fixed point (``PRECISION_BITS = 32 - 8 - 2``) exactly as ``normalize_coeffs_8bpc``
  does. Python's ``math.sin`` is the same C library ``sin`` Pillow calls.
- each pass: Pillow sums ``pixel * weight`` in a 32-bit int starting from ``2**21`` and keeps
  ``clip(sum >> 22, 0, 255)``. Every product and partial sum is an integer below ``2**31``,
  so float64 (53-bit mantissa) matrix products hold them exactly, in any summation order;
  ``floor((sum + 2**21) / 2**22)`` clipped to 0..255 is then the same byte.
- pass order: the 8-bit intermediate between the passes is rounded, so the order matters.
  Pillow used to run the horizontal pass first; recent Pillow runs the vertical pass first
  when the height shrinks by more than twice as many pixels as the width. Which rule the
  installed Pillow follows is checked once with probe images (:func:`pass_order_rule`);
  if neither rule reproduces it, :func:`resize_grey` falls back to calling Pillow.

Verified in ``tests/images/test_resample.py`` on random images of many shapes and sizes.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

PRECISION_BITS = 22
_ROUND = float(1 << (PRECISION_BITS - 1))
_SCALE = 1.0 / (1 << PRECISION_BITS)
Rule = Literal["horizontal-first", "vertical-when-taller"]


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


@functools.lru_cache(maxsize=4096)
def lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float64 matrix of Pillow's fixed-point LANCZOS weights."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    inv = 1.0 / filterscale
    m = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - xmin
        w = []
        total = 0.0
        for x in range(n):
            t = (x + xmin - center + 0.5) * inv
            v = _sinc(t) * _sinc(t / 3) if -3.0 <= t < 3.0 else 0.0
            w.append(v)
            total += v
        if total != 0.0:
            w = [v / total for v in w]
        one = 1 << PRECISION_BITS
        m[xx, xmin : xmin + n] = [int(-0.5 + v * one) if v < 0 else int(0.5 + v * one) for v in w]
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=4096)
def _stacked_weights_t(in_size: int, out_sizes: tuple[int, ...]) -> np.ndarray:
    """The weights of several target widths side by side, transposed: one product for all."""
    m = np.ascontiguousarray(np.concatenate([lanczos_weights(in_size, o) for o in out_sizes]).T)
    m.setflags(write=False)
    return m


def _to_byte(acc: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8(acc + 2**21)`` on exact integer sums held in float64 (in place)."""
    acc += _ROUND
    acc *= _SCALE
    np.floor(acc, out=acc)
    return np.clip(acc, 0.0, 255.0, out=acc)


def _vertical_first(h: int, w: int, size: tuple[int, int], rule: Rule) -> bool:
    ow, oh = size
    return rule == "vertical-when-taller" and (h - oh) > 0 and (h - oh) > 2 * (w - ow)


def _horizontal_first(x: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Horizontal pass (one product for every target width that changes), then vertical;
    a pass is skipped where its side does not change, as Pillow skips it."""
    h, w = x.shape
    changed = tuple(ow for ow, _ in sizes if ow != w)
    first = _to_byte(x @ _stacked_weights_t(w, changed)) if changed else x
    out, col = [], 0
    for ow, oh in sizes:
        part = x
        if ow != w:
            part, col = first[:, col : col + ow], col + ow
        out.append((_to_byte(lanczos_weights(h, oh) @ part) if oh != h else part).astype(np.uint8))
    return out


def _resize_exact(grey: np.ndarray, sizes: Sequence[tuple[int, int]], rule: Rule) -> list[np.ndarray]:
    h, w = grey.shape
    x = grey.astype(np.float64)
    vertical = [_vertical_first(h, w, s, rule) for s in sizes]
    out: list[np.ndarray] = [np.empty(0)] * len(sizes)
    for v in (False, True):  # vertical first = horizontal first on the transposed image
        idx = [i for i, vf in enumerate(vertical) if vf == v]
        if not idx:
            continue
        if v:
            results = [np.ascontiguousarray(r.T) for r in _horizontal_first(x.T, [sizes[i][::-1] for i in idx])]
        else:
            results = _horizontal_first(x, [sizes[i] for i in idx])
        for i, r in zip(idx, results, strict=True):
            out[i] = r
    return out


def _resize_pillow(grey: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    from PIL import Image

    img = Image.fromarray(grey, "L")
    return [np.asarray(img.resize(s, Image.Resampling.LANCZOS)) for s in sizes]


#: probe shapes (h, w) and targets; the first two need different pass orders under the two rules
_PROBES = (((120, 40), (32, 32)), ((96, 30), (9, 8)), ((40, 150), (32, 32)), ((23, 17), (32, 32)))


@functools.lru_cache(maxsize=1)
def pass_order_rule() -> Rule | None:
    """Which pass-order rule reproduces the installed Pillow on the probe images (None: neither)."""
    rng = np.random.default_rng(20261123)
    probes = [(rng.integers(0, 256, shape, dtype=np.uint8), size) for shape, size in _PROBES]
    for rule in ("vertical-when-taller", "horizontal-first"):
        if all(np.array_equal(_resize_exact(g, [s], rule)[0], _resize_pillow(g, [s])[0]) for g, s in probes):
            return rule
    import PIL

    logger.warning("the LANCZOS matrix resize does not reproduce Pillow %s; hashing falls back to "
                   "Pillow's own (slower) resize", PIL.__version__)
    return None


def resize_grey(grey: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """``Image.fromarray(grey, "L").resize(size, LANCZOS)`` for each ``(width, height)`` in
    ``sizes``, as uint8 arrays of shape ``(height, width)``, byte for byte."""
    g = np.asarray(grey)
    if g.dtype != np.uint8 or g.ndim != 2 or 0 in g.shape:
        raise ValueError(f"expected a non-empty 2-D uint8 grey image, got {g.dtype} {g.shape}")
    for ow, oh in sizes:
        if ow < 1 or oh < 1:
            raise ValueError(f"target sizes must be positive, got {(ow, oh)}")
    rule = pass_order_rule()
    return _resize_exact(g, sizes, rule) if rule is not None else _resize_pillow(g, sizes)


_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved: list[tuple[object, int]] = []


class NumpyBlasThreads:
    """While open, numpy's BLAS runs ``threads`` threads (other libraries' untouched).

    The image workers already run one resize per core; letting OpenBLAS split each small
    product over the same cores again made hashing slower (measured: 975 vs 750 us per
    image). The setting is process-wide, so overlapping users share it: the first to enter
    sets it, the last to leave restores the original. A no-op when threadpoolctl is not
    installed or numpy's BLAS is not found."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def __enter__(self) -> NumpyBlasThreads:
        global _blas_users
        with _blas_lock:
            _blas_users += 1
            if _blas_users == 1:
                _blas_saved[:] = _limit_numpy_blas(self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        global _blas_users
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for lib, n in _blas_saved:
                    lib.set_num_threads(n)  # type: ignore[attr-defined]
                _blas_saved.clear()


def _limit_numpy_blas(threads: int) -> list[tuple[object, int]]:
    """Set numpy's own BLAS libraries to ``threads``; returns (library, previous threads)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    pkg = os.path.dirname(os.path.realpath(np.__file__))
    owned = {pkg, pkg + ".libs"}  # a wheel's bundled OpenBLAS lives in numpy.libs/
    saved = []
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and os.path.dirname(os.path.realpath(lib.filepath or "")) in owned:
            saved.append((lib, lib.num_threads))
            lib.set_num_threads(threads)
    return saved
