import subprocess
import sys

import numpy as np
import pytest

from semsearch.config import TextEncoderSettings
from semsearch.encoders.base import TextEncoder
from semsearch.encoders.sbert import SentenceTransformerEncoder, resolve_device
from semsearch.errors import BadInput
from tests.conftest import subprocess_env


def test_real_minilm_is_a_text_encoder(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384 and minilm.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_vectors_are_normalised_float32_and_batch_independent(minilm):
    texts = ["a cat sat on the mat", "quantum entanglement", "", "x" * 5000]
    v = minilm.encode(texts, batch_size=2)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(minilm.encode(texts, batch_size=4), v, atol=1e-5)
    np.testing.assert_allclose(minilm.encode(texts[1:2]), v[1:2], atol=1e-5)


def test_similar_texts_are_close(minilm):
    v = minilm.encode(["a dog runs in the park", "a puppy is running on the grass", "stock market crash"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_empty_batch_and_single_string(minilm):
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(BadInput, match="not a single string"):
        minilm.encode("just a string")


def test_model_loads_lazily_and_bad_path_is_named(tmp_path):
    enc = SentenceTransformerEncoder(TextEncoderSettings(model=str(tmp_path / "no-such-model"), device="cpu"))
    assert enc._model is None  # constructing loads nothing
    with pytest.raises(BadInput, match="no-such-model"):
        enc.encode(["x"])


def test_import_loads_no_heavy_library():
    code = (
        "import sys, semsearch, semsearch.cli, semsearch.search, semsearch.indexer.index;"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'bm25s', 'elasticsearch') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
def test_cuda_fp16_encoding_matches_cpu(minilm):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    gpu = SentenceTransformerEncoder(TextEncoderSettings(device="auto", fp16=True))
    assert resolve_device("auto") == "cuda"
    texts = ["a dog runs in the park", "quantum entanglement of photons"]
    a, b = gpu.encode(texts), minilm.encode(texts)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=2e-2)
