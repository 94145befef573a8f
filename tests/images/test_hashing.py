"""Our vectorised pHash/dHash against the ImageHash library, bit for bit, hex for hex."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import ImageOps

from semsearch.images import hashing
from tests.images.conftest import PHOTOS, drawing, photo


@pytest.fixture(scope="module")
def images():
    ims = [photo(n, 512) for n in PHOTOS] + [drawing(i) for i in range(8)]
    ims.append(photo("camera").convert("L"))  # a greyscale-mode image
    ims.append(ImageOps.mirror(photo("chelsea")).rotate(5))
    return ims


@pytest.mark.parametrize("kind,ref", [("phash", imagehash.phash), ("dhash", imagehash.dhash)])
def test_bit_identical_to_imagehash(images, kind, ref):
    ours = hashing.hash_images(images, kind)
    assert ours.shape == (len(images), 8) and ours.dtype == np.uint8
    assert hashing.to_hex(ours) == [str(ref(im)) for im in images]


@pytest.mark.parametrize("kind,ref", [("phash", imagehash.phash), ("dhash", imagehash.dhash)])
def test_mirrored_variant_equals_hashing_the_mirrored_image(images, kind, ref):
    ours = hashing.to_hex(hashing.hash_images(images, kind, mirrored=True))
    theirs = [str(ref(ImageOps.mirror(im))) for im in images]
    assert ours == theirs


def test_byte_and_bit_order_and_hamming(images):
    packed = hashing.hash_images(images[:2], "phash")
    ih = [imagehash.phash(im) for im in images[:2]]
    bits = np.unpackbits(packed, axis=1).astype(bool)
    assert (bits[0] == ih[0].hash.flatten()).all()  # row-major, MSB first
    assert int(hashing.hamming(packed[0], packed[1])) == ih[0] - ih[1]
    assert (hashing.from_hex(hashing.to_hex(packed)) == packed).all()


def test_near_duplicates_are_close_and_different_images_far():
    a = photo("astronaut", 512)
    small = a.resize((a.width // 2, a.height // 2))
    h = hashing.hash_images([a, small, photo("coffee", 512)], "phash")
    assert hashing.hamming(h[0], h[1]) <= 4
    assert hashing.hamming(h[0], h[2]) > 16


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(n, 32, 32\)"):
        hashing.phash_bits(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="unknown hash kind"):
        hashing.compute("ahash", [hashing.hash_inputs(drawing(0))])


def test_fast_decode_changes_large_jpeg_hashes_only_slightly(tmp_path):
    """fast_decode (libjpeg DCT scaling) is the one documented departure from ImageHash:
    a large JPEG decoded at 1/4 scale hashes within a few bits of the full decode; PNGs and
    small JPEGs are decoded in full either way (identical hashes)."""
    from semsearch.images.io import load_image

    big = photo("astronaut", 512).resize((1400, 1400))
    big.save(tmp_path / "big.jpg", quality=92)
    big.save(tmp_path / "big.png")
    photo("coffee", 200).save(tmp_path / "small.jpg")
    for name, exact_equal in [("big.jpg", False), ("big.png", True), ("small.jpg", True)]:
        full = load_image(tmp_path / name)
        fast = load_image(tmp_path / name, draft=256)
        assert (fast.size == full.size) == exact_equal
        for kind in ("phash", "dhash"):
            d = int(hashing.hamming(*hashing.hash_images([full, fast], kind)))
            assert d == 0 if exact_equal else d <= 6, (name, kind, d)
