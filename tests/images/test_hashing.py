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
