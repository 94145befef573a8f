"""load_image on every awkward kind of file: each bad one gets its own typed error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semsearch.images.io import (
    EmptyImageFile,
    ImageNotFound,
    ImageOutsideRoots,
    ImageTooLarge,
    ImageUnreadable,
    NotAnImage,
    load_image,
    resolve_image_path,
)
from tests.images.conftest import drawing, jpeg_bytes


def test_zero_size_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(EmptyImageFile, match=r"empty\.jpg: file is empty"):
        load_image(p)


def test_text_file_with_image_extension(tmp_path):
    p = tmp_path / "fake.png"
    p.write_text("hello, I am not a PNG")
    with pytest.raises(NotAnImage, match=r"fake\.png: not a recognised image"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes(drawing(1, 300), quality=90)
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageUnreadable, match=r"cut\.jpg: cannot decode.*truncated"):
        load_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageNotFound, match="does not exist"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_guard_checks_the_header_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (2000, 1500)).save(p)
    with pytest.raises(ImageTooLarge, match="3000000 pixels exceeds the limit of 1000000"):
        load_image(p, max_pixels=1_000_000)
    assert load_image(p, max_pixels=3_000_000).size == (2000, 1500)


def test_cmyk_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    drawing(2).convert("CMYK").save(p)
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (200, 200)
    ref = np.asarray(drawing(2), dtype=np.int16)
    assert np.abs(np.asarray(im, dtype=np.int16) - ref).mean() < 12


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(p)
    assert Image.open(p).mode.startswith("I")
    arr = np.asarray(load_image(p))[:, :, 0]
    assert arr[0, 0] == 0 and arr[0, -1] == 255 and 120 <= arr[0, 128] <= 135


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    p = tmp_path / "pal.png"
    im = Image.new("P", (10, 10), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 5, 10))
    im.info["transparency"] = 0
    im.save(p, transparency=0)
    out = np.asarray(load_image(p))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 9]) == (255, 255, 255)


def test_rgba_alpha_is_composited_on_white(tmp_path):
    p = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(p)
    assert tuple(np.asarray(load_image(p))[3, 3]) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(p).n_frames == 3
    px = np.asarray(load_image(p))[8, 8]
    assert px[0] > 200 and px[1] < 50 and px[2] < 50


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rot.jpg"
    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 20, 20))  # black left half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.size == (20, 40)  # portrait once orientation applied
    arr = np.asarray(out).mean(axis=2)
    assert arr[:20].mean() < 60 and arr[20:].mean() > 200  # the black half is now on top


def test_paths_must_stay_inside_the_roots(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    with pytest.raises(ImageOutsideRoots, match="outside the allowed image roots"):
        resolve_image_path("../secret.png", [root], base=root)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ImageOutsideRoots):
        resolve_image_path(root / "link.png", [root])
    (root / "ok.png").write_bytes(b"x")
    assert resolve_image_path("ok.png", [root], base=root) == (root / "ok.png").resolve()


def test_root_guard_agrees_with_realpath_and_caches_only_directories(tmp_path):
    """The loader's cached resolver gives os.path.realpath's answer for plain files, file
    symlinks, symlinked directories, '..' and '.' names, and refuses the same paths."""
    import os
    from pathlib import Path

    from semsearch.images.io import RootGuard

    root, out = tmp_path / "root", tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    out.mkdir()
    for f in (root / "a.png", root / "sub" / "b.png", out / "c.png"):
        f.write_bytes(b"x")
    (root / "inner-link").symlink_to(root / "sub")
    (root / "outer-link").symlink_to(out)
    guard = RootGuard([root])
    inside = [root / "a.png", root / "sub" / "b.png", root / "inner-link" / "b.png", root / "sub" / ".." / "a.png",
              root / "sub" / "..", root / "sub" / "."]
    for _ in range(2):  # the second pass answers from the directory cache
        for p in inside:
            assert guard.resolve(p) == Path(os.path.realpath(p)), p
        for p in (root / "outer-link" / "c.png", root / "sub" / ".." / ".." / "out" / "c.png"):
            with pytest.raises(ImageOutsideRoots):
                guard.resolve(p)
    (root / "sub" / "swap.png").symlink_to(out / "c.png")  # a new file symlink in a cached directory
    with pytest.raises(ImageOutsideRoots):
        guard.resolve(root / "sub" / "swap.png")
    assert guard.resolve("b.png", base=root / "sub") == root.resolve() / "sub" / "b.png"
