"""The open_clip ImageEncoder with a tiny random-weight architecture: plumbing only."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.config import ClipSettings
from semsearch.encoders.base import ImageEncoder
from semsearch.errors import BadInput
from tests.images.conftest import TINY_CLIP, drawing, photo


@pytest.fixture(scope="module")
def clip():
    from semsearch.encoders.clip import ClipEncoder

    return ClipEncoder(ClipSettings(architecture=str(TINY_CLIP), device="cpu", batch_size=2))


def test_protocol_shapes_and_norms(clip):
    assert isinstance(clip, ImageEncoder) and clip.dim == 32
    imgs = [photo("coffee"), drawing(0), drawing(1)]
    v = clip.encode_images(imgs)
    t = clip.encode_texts(["a cup of coffee", "shapes", "x"])
    for m in (v, t):
        assert m.shape == (3, 32) and m.dtype == np.float32
        assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-5)
    assert clip.encode_images([]).shape == (0, 32)


def test_batching_does_not_change_vectors(clip):
    imgs = [photo(n) for n in ("camera", "chelsea", "rocket")] + [drawing(3)]
    a = clip.encode_images(imgs, batch_size=1)
    b = clip.encode_images(imgs, batch_size=4)
    assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(clip.encode_texts(["a", "b", "c"], batch_size=1), clip.encode_texts(["a", "b", "c"]), atol=1e-5)


def test_random_weights_are_seeded_so_processes_agree(clip):
    from semsearch.encoders.clip import ClipEncoder

    other = ClipEncoder(ClipSettings(architecture=str(TINY_CLIP), device="cpu"))
    img = [drawing(5)]
    assert np.allclose(clip.encode_images(img), other.encode_images(img), atol=1e-6)
    assert other.name == clip.name == "open_clip/tiny_clip/random-seed0"


def test_bad_model_settings_are_clear():
    from semsearch.encoders.clip import ClipEncoder

    with pytest.raises(BadInput, match="unknown open_clip architecture 'ViT-Nope'"):
        ClipEncoder(ClipSettings(architecture="ViT-Nope", device="cpu"))
    with pytest.raises(BadInput, match="weights file /nonexistent/w.pt does not exist"):
        ClipEncoder(ClipSettings(architecture=str(TINY_CLIP), pretrained="/nonexistent/w.pt", device="cpu"))


def test_local_weights_file_is_loaded(clip, tmp_path):
    import torch

    from semsearch.encoders.clip import ClipEncoder

    sd = {k: v + 0.01 for k, v in clip.model.state_dict().items()}  # different weights
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    loaded = ClipEncoder(ClipSettings(architecture=str(TINY_CLIP), pretrained=str(path), device="cpu"))
    assert loaded.name == "open_clip/tiny_clip/w.pt" and loaded.has_real_weights
    img = [drawing(2)]
    assert not np.allclose(loaded.encode_images(img), clip.encode_images(img), atol=1e-4)
