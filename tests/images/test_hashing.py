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


def test_hash_only_fast_decode_reads_luma_at_reduced_scale(tmp_path):
    """With no CLIP model, images.fast_decode decodes a colour JPEG's luma only, at the
    smallest DCT scale that keeps 64 px a side: grey pixels, a fraction of the decode, and
    hashes within a few bits of the exact ones. PNGs are decoded in full (identical hashes);
    with a CLIP preprocess the draft stays RGB at >= 256 px."""
    from semsearch.config import ImageSettings
    from semsearch.documents import Document
    from semsearch.images.batch import FAST_HASH_DECODE_SIDE, ImageBatchLoader
    from semsearch.images.io import load_image

    photo("astronaut", 512).save(tmp_path / "a.jpg", quality=92)
    photo("coffee", 512).save(tmp_path / "c.png")
    grey = load_image(tmp_path / "a.jpg", draft=FAST_HASH_DECODE_SIDE, draft_grey=True)
    assert grey.mode == "RGB" and min(grey.size) == FAST_HASH_DECODE_SIDE  # 512 / 8
    px = np.asarray(grey)
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()

    def loader_hashes(fast: bool, clip=None):
        loader = ImageBatchLoader(ImageSettings(fast_decode=fast), roots=[tmp_path], clip_preprocess=clip)
        seen = []
        if clip is not None:
            loader.clip_preprocess = lambda im: seen.append((im.size, im.mode))
        try:
            docs = [Document(id=n, image=str(tmp_path / n)) for n in ("a.jpg", "c.png")]
            inputs = [f.result().hashes for f in loader.futures(docs)]
        finally:
            loader.close()
        return {k: hashing.compute(k, inputs) for k in ("phash", "dhash")}, seen

    exact, _ = loader_hashes(False)
    fast, _ = loader_hashes(True)
    for kind in ("phash", "dhash"):
        assert int(hashing.hamming(exact[kind][1], fast[kind][1])) == 0
        assert 0 <= int(hashing.hamming(exact[kind][0], fast[kind][0])) <= 6, kind
    _, seen = loader_hashes(True, clip=object())
    # with CLIP: the 512 px JPEG decodes at 1/2 (256 px, in colour); the PNG in full
    assert sorted(seen) == [((256, 256), "RGB"), ((512, 341), "RGB")]
