"""Real images for the image tests: skimage.data photographs and Pillow drawings, written
into a temporary tree, plus near-duplicates and broken files. Nothing from ../shared."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

TINY_CLIP = Path(__file__).with_name("tiny_clip.json")
PHOTOS = ["astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "clock", "page", "text"]


def photo(name: str, size: int = 256):
    import skimage.data
    from PIL import Image

    im = Image.fromarray(getattr(skimage.data, name)())
    im.thumbnail((size, size))
    return im.convert("RGB")


def drawing(seed: int, size: int = 200):
    """A distinct synthetic picture: random coloured shapes on a gradient."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 255, size, dtype=np.uint8)
    base = np.stack([np.tile(grad, (size, 1)), np.tile(grad[:, None], (1, size)), np.full((size, size), seed * 37 % 256, np.uint8)], -1)
    im = Image.fromarray(base)
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.integers(0, size - 40, 2)
        w, h = rng.integers(20, 100, 2)
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=col)
    return im


@pytest.fixture(scope="session")
def photos():
    return {n: photo(n) for n in PHOTOS}


@pytest.fixture
def image_tree(tmp_path: Path, photos) -> Path:
    return make_image_tree(tmp_path, photos)


def make_image_tree(tmp_path: Path, photos) -> Path:
    """A directory of 9 photographs and 3 drawings, with a half-size copy and a mirrored
    copy of the astronaut (near-duplicates) and a captions.tsv."""
    from PIL import ImageOps

    root = tmp_path / "imgs"
    (root / "photos").mkdir(parents=True)
    (root / "drawings").mkdir()
    for n, im in photos.items():
        im.save(root / "photos" / f"{n}.jpg", quality=92)
    for i in range(3):
        drawing(i).save(root / "drawings" / f"d{i}.png")
    a = photos["astronaut"]
    a.resize((a.width // 2, a.height // 2)).save(root / "photos" / "astronaut_small.jpg", quality=85)
    ImageOps.mirror(a).save(root / "photos" / "astronaut_flip.png")
    (root / "notes.txt").write_text("not an image, skipped by extension")
    (root / "captions.tsv").write_text(
        "image\tcaption\nchelsea.jpg\ta ginger cat looking at the camera\n"
        "coffee.jpg\ta cup of coffee on a saucer\n",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def image_settings(tmp_path: Path):
    return make_settings(tmp_path)


def make_settings(tmp_path: Path):
    from semsearch.config import Settings

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    s.clip.architecture = str(TINY_CLIP)
    s.clip.device = "cpu"
    s.clip.batch_size = 4
    s.images.roots = [tmp_path]
    s.images.workers = 2
    return s


def jpeg_bytes(im, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()
