"""The matrix LANCZOS resize against Pillow's own, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semsearch.images import resample


def pillow(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a, "L").resize(size, Image.Resampling.LANCZOS))


def shapes(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    fixed = [(1, 1), (1, 300), (300, 1), (8, 9), (32, 32), (31, 33), (32, 500), (500, 32), (150, 200),
             (200, 150), (375, 500), (640, 90), (90, 640), (17, 23)]
    return fixed + [tuple(int(v) for v in rng.integers(1, 700, 2)) for _ in range(n)]


def test_hash_sizes_equal_pillow_on_random_and_flat_images():
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate(shapes(rng, 120)):
        if i % 3 == 0:  # hard edges: saturate the negative lobes (clipping at 0 and 255)
            a = ((rng.random((h, w)) > 0.5) * 255).astype(np.uint8)
        elif i % 3 == 1:
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        else:  # smooth gradient, like a photo
            a = (np.add.outer(np.arange(h), np.arange(w)) * 255 // max(1, h + w - 2)).astype(np.uint8)
        p32, d98 = resample.resize_grey(a, [(32, 32), (9, 8)])
        assert p32.dtype == np.uint8 and p32.shape == (32, 32) and d98.shape == (8, 9)
        assert np.array_equal(p32, pillow(a, (32, 32))), (h, w)
        assert np.array_equal(d98, pillow(a, (9, 8))), (h, w)


def test_any_target_size_equals_pillow_including_upscaling_and_unchanged_sides():
    rng = np.random.default_rng(11)
    for h, w in shapes(rng, 40):
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        sizes = [(w, max(1, h // 3)), (max(1, w // 2), h), (w, h), (int(rng.integers(1, 80)), int(rng.integers(1, 80)))]
        for size, ours in zip(sizes, resample.resize_grey(a, sizes), strict=True):
            assert np.array_equal(ours, pillow(a, size)), ((h, w), size)


def test_pass_order_is_detected_and_the_probes_can_tell_the_rules_apart():
    assert resample.pass_order_rule() is not None  # the installed Pillow is reproduced
    rng = np.random.default_rng(20261123)
    differ = []
    for shape, size in resample._PROBES:
        g = rng.integers(0, 256, shape, dtype=np.uint8)
        v = resample._resize_exact(g, [size], "vertical-when-taller")[0]
        hz = resample._resize_exact(g, [size], "horizontal-first")[0]
        differ.append(not np.array_equal(v, hz))
    assert differ[:2] == [True, True]  # otherwise the probe could not discriminate


def test_unknown_pillow_behaviour_falls_back_to_pillow(monkeypatch):
    monkeypatch.setattr(resample, "pass_order_rule", lambda: None)
    monkeypatch.setattr(resample, "_resize_exact", lambda *a: pytest.fail("must not be used"))
    a = np.random.default_rng(3).integers(0, 256, (120, 40), dtype=np.uint8)
    assert np.array_equal(resample.resize_grey(a, [(32, 32)])[0], pillow(a, (32, 32)))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 4, 3), np.uint8), "2-D uint8"),
    (np.zeros((4, 4), np.float32), "2-D uint8"),
    (np.zeros((0, 4), np.uint8), "non-empty"),
])
def test_bad_input_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        resample.resize_grey(bad, [(32, 32)])
    with pytest.raises(ValueError, match="positive"):
        resample.resize_grey(np.zeros((4, 4), np.uint8), [(0, 3)])


def test_numpy_blas_threads_are_limited_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def numpy_blas():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas" and "numpy" in i["filepath"]]

    before = numpy_blas()
    if not before:
        pytest.skip("numpy's BLAS is not a separate library here")
    with resample.NumpyBlasThreads(1):
        assert numpy_blas() == [1] * len(before)
    assert numpy_blas() == before
    # overlapping users (two loaders): the first one out must not restore under the second
    a, b = resample.NumpyBlasThreads(1), resample.NumpyBlasThreads(1)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert numpy_blas() == [1] * len(before)
    b.__exit__(None, None, None)
    assert numpy_blas() == before
