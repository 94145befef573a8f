"""Congruence: the libjpeg-turbo path (simplejpeg) gives Pillow's pixels, or steps aside.

Every case decodes the same file twice, through ``turbo=True`` and ``turbo=False`` (the
Pillow path), and compares the arrays byte for byte; the fast path must actually have
answered (``jpeg.decode`` not None) where the file is one it takes, and must answer None
where Pillow has to decide."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tests.images.conftest import drawing, jpeg_bytes, photo

pytest.importorskip("simplejpeg")

from semsearch.images import jpeg  # noqa: E402
from semsearch.images.io import ImageTooLarge, ImageUnreadable, load_grey, load_image  # noqa: E402


def assert_congruent(path: Path, *, takes: bool = True) -> None:
    data = path.read_bytes()
    for draft in (None, 32, 64, 256):
        for grey in (False, True) if draft else (False,):
            fast = np.asarray(load_image(path, draft=draft, draft_grey=grey, turbo=True))
            ref = np.asarray(load_image(path, draft=draft, draft_grey=grey, turbo=False))
            assert fast.shape == ref.shape and np.array_equal(fast, ref), (path.name, draft, grey)
        g_fast = load_grey(path, draft=draft, turbo=True)
        g_ref = load_grey(path, draft=draft, turbo=False)
        assert g_fast.shape == g_ref.shape and np.array_equal(g_fast, g_ref), (path.name, draft, "grey")
        mode = "luma" if draft else "L"
        answered = jpeg.decode(data, max_pixels=10**9, draft=draft, mode=mode)
        assert (answered is not None) == takes, (path.name, draft)


def exif_block(orientation: int, endian: str = "<") -> bytes:
    """A minimal EXIF APP1 body: IFD0 with one Orientation SHORT."""
    head = b"II*\x00" if endian == "<" else b"MM\x00*"
    ifd = struct.pack(endian + "H", 1) + struct.pack(endian + "HHIH2x", 0x0112, 3, 1, orientation)
    return b"Exif\x00\x00" + head + struct.pack(endian + "I", 8) + ifd + struct.pack(endian + "I", 0)


@pytest.mark.parametrize("size", [(7, 5), (64, 64), (200, 150), (150, 200), (513, 257), (1000, 700)])
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_sizes_and_subsamplings_match_pillow(tmp_path, size, subsampling):
    f = tmp_path / "a.jpg"
    photo("chelsea", 1000).resize(size).save(f, quality=90, subsampling=subsampling)
    assert_congruent(f)


def test_progressive_grey_and_low_quality_jpegs_match_pillow(tmp_path):
    im = photo("astronaut", 512)
    im.save(tmp_path / "prog.jpg", progressive=True, quality=80)
    im.convert("L").save(tmp_path / "grey.jpg", quality=85)
    drawing(3, 300).save(tmp_path / "q10.jpg", quality=10)
    for name in ("prog.jpg", "grey.jpg", "q10.jpg"):
        assert_congruent(tmp_path / name)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("endian", ["<", ">"])
def test_every_exif_orientation_matches_pillows_transpose(tmp_path, orientation, endian):
    f = tmp_path / "o.jpg"
    photo("rocket", 300).resize((240, 130)).save(f, quality=90, exif=exif_block(orientation, endian))
    assert jpeg.exif_orientation(exif_block(orientation, endian)) == orientation
    assert_congruent(f)
    if orientation >= 5:  # the sides swap
        assert load_grey(f).shape == (240, 130)


def test_pillow_written_exif_is_read(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "semsearch camera"  # another tag before it
    exif[0x0112] = 6
    f = tmp_path / "p.jpg"
    photo("coffee", 300).save(f, exif=exif.tobytes())
    assert jpeg.exif_orientation(exif.tobytes()) == 6
    assert_congruent(f)


def test_files_only_pillow_can_judge_fall_back(tmp_path):
    from PIL import Image

    im = photo("coins", 300).convert("RGB")
    im.convert("CMYK").save(tmp_path / "cmyk.jpg")
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="3"/></x:xmpmeta>'
    im.save(tmp_path / "xmp.jpg", xmp=xmp)
    im.save(tmp_path / "badexif.jpg", exif=b"Exif\x00\x00XX-not-tiff")
    long_orientation = exif_block(6).replace(struct.pack("<HH", 0x0112, 3), struct.pack("<HH", 0x0112, 4))
    im.save(tmp_path / "long.jpg", exif=long_orientation)
    im.save(tmp_path / "multi.mpo", "MPO", save_all=True, append_images=[Image.new("RGB", (50, 50))])
    for name in ("cmyk.jpg", "xmp.jpg", "badexif.jpg", "long.jpg", "multi.mpo"):
        assert_congruent(tmp_path / name, takes=False)
    assert load_grey(tmp_path / "xmp.jpg").shape == (im.height, im.width)
    assert np.array_equal(load_grey(tmp_path / "xmp.jpg"), load_grey(tmp_path / "xmp.jpg", turbo=False))


def test_broken_and_oversized_jpegs_keep_pillows_errors(tmp_path):
    data = jpeg_bytes(photo("camera", 256), quality=90)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert jpeg.decode(data[: len(data) // 2], max_pixels=10**9) is None  # a warning: Pillow decides
    for turbo in (True, False):
        with pytest.raises(ImageUnreadable, match="cut.jpg"):
            load_grey(tmp_path / "cut.jpg", turbo=turbo)
    (tmp_path / "big.jpg").write_bytes(data)
    for turbo in (True, False):
        with pytest.raises(ImageTooLarge, match="images.max_pixels"):
            load_grey(tmp_path / "big.jpg", max_pixels=1000, turbo=turbo)


def test_luma_needs_a_draft():
    with pytest.raises(ValueError, match="luma"):
        jpeg.decode(jpeg_bytes(drawing(1)), max_pixels=10**9, mode="luma")


def test_loader_hashes_are_the_same_with_either_decoder(tmp_path, photos):
    from semsearch.config import ImageSettings
    from semsearch.documents import Document
    from semsearch.images.batch import ImageBatchLoader

    for n, im in photos.items():
        im.save(tmp_path / f"{n}.jpg", quality=88)
    docs = [Document(id=n, image=str(tmp_path / f"{n}.jpg")) for n in photos]
    for fast in (False, True):
        got = {}
        for decoder in ("auto", "pillow"):
            loader = ImageBatchLoader(ImageSettings(fast_decode=fast, jpeg_decoder=decoder), roots=[tmp_path])
            try:
                got[decoder] = [(f.result().hashes.p32, f.result().hashes.d98) for f in loader.futures(docs)]
            finally:
                loader.close()
        for a, b in zip(got["auto"], got["pillow"], strict=True):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
