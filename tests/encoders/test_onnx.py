"""The ONNX Runtime text encoder: congruent with the PyTorch one on the real MiniLM model."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from semsearch.config import TextEncoderSettings
from semsearch.encoders import make_text_encoder
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BadInput

pytest.importorskip("onnxruntime")

TEXTS = ["a cat sat on the mat", "quantum entanglement", "", "x" * 5000,
         "Vaccines train the immune system to make antibodies against a virus."]


@pytest.fixture(scope="module")
def onnx_encoder(tmp_path_factory):
    settings = TextEncoderSettings(device="cpu", backend="onnx", onnx_dir=tmp_path_factory.mktemp("onnx"))
    enc = make_text_encoder(settings)
    enc.encode(["warm up"])
    return enc


def test_factory_picks_the_backend(tmp_path):
    from semsearch.encoders.onnx import OnnxTextEncoder
    from semsearch.encoders.sbert import SentenceTransformerEncoder

    cpu = TextEncoderSettings(device="cpu", onnx_dir=tmp_path)
    assert isinstance(make_text_encoder(cpu), SentenceTransformerEncoder)  # bulk: backend=torch
    auto = make_text_encoder(cpu, for_queries=True)  # queries on CPU: ONNX, with fallback
    assert isinstance(auto, OnnxTextEncoder) and auto.fallback and auto._session is None  # lazy
    forced = make_text_encoder(TextEncoderSettings(backend="onnx", onnx_dir=tmp_path))
    assert isinstance(forced, OnnxTextEncoder) and not forced.fallback
    torch_q = TextEncoderSettings(device="cpu", query_backend="torch")
    assert isinstance(make_text_encoder(torch_q, for_queries=True), SentenceTransformerEncoder)
    assert not any(tmp_path.iterdir())  # nothing exported before first use


def test_auto_backend_falls_back_to_pytorch_when_export_fails(tmp_path, monkeypatch, minilm, caplog):
    from semsearch.encoders import onnx as onnx_mod

    def broken_export(source, out_dir):
        raise RuntimeError("unsupported operator in this model")

    monkeypatch.setattr(onnx_mod, "export_text_encoder", broken_export)
    auto = make_text_encoder(TextEncoderSettings(device="cpu", onnx_dir=tmp_path), for_queries=True)
    v = auto.encode(TEXTS[:2])
    assert auto.backend == "torch" and "unsupported operator" in caplog.text
    np.testing.assert_allclose(v, minilm.encode(TEXTS[:2]), atol=1e-6)
    forced = make_text_encoder(TextEncoderSettings(backend="onnx", onnx_dir=tmp_path))
    with pytest.raises(RuntimeError, match="unsupported operator"):  # asked for ONNX: no silent fallback
        forced.encode(["x"])


def test_onnx_vectors_match_pytorch(onnx_encoder, minilm):
    assert isinstance(onnx_encoder, TextEncoder)
    assert onnx_encoder.name == minilm.name and onnx_encoder.dim == 384
    v = onnx_encoder.encode(TEXTS, batch_size=2)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v, minilm.encode(TEXTS), atol=2e-5)
    # batch composition (padding, length sorting) does not change a text's vector
    np.testing.assert_allclose(onnx_encoder.encode(TEXTS[1:2]), v[1:2], atol=1e-5)
    np.testing.assert_allclose(onnx_encoder.encode(TEXTS[::-1], batch_size=64), v[::-1], atol=1e-5)


def test_onnx_runs_batches_of_onnx_batch_size_by_default(onnx_encoder, monkeypatch):
    """text_encoder.onnx_batch_size (4): small batches are cheaper per text on CPU than
    PyTorch's batch_size (64); the vectors do not depend on it."""
    assert onnx_encoder.settings.onnx_batch_size == 4 and onnx_encoder.settings.batch_size == 64
    texts = [f"text {i} " + "word " * i for i in range(10)]
    whole = onnx_encoder.encode(texts, batch_size=64)
    sizes = []
    real = onnx_encoder._session.run

    def counting(names, feed):
        sizes.append(len(feed["input_ids"]))
        return real(names, feed)

    monkeypatch.setattr(onnx_encoder._session, "run", counting, raising=False)
    np.testing.assert_allclose(onnx_encoder.encode(texts), whole, atol=1e-5)
    assert sizes == [4, 4, 2]


def test_empty_batch_and_single_string(onnx_encoder):
    assert onnx_encoder.encode([]).shape == (0, 384)
    with pytest.raises(BadInput, match="not a single string"):
        onnx_encoder.encode("just a string")


def test_concurrent_queries_give_the_same_vectors(onnx_encoder):
    queries = [f"query number {i} about {w}" for i, w in enumerate(["cells", "stars", "bread", "chess"] * 8)]
    expected = onnx_encoder.encode(queries)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda q: onnx_encoder.encode([q])[0], queries))
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-5)


def test_export_is_reused_and_a_stale_temp_dir_is_ignored(onnx_encoder):
    d = onnx_encoder.export_dir
    assert sorted(p.name for p in d.iterdir()) == ["model.onnx", "semsearch-onnx.json", "tokenizer.json"]
    mtime = (d / "model.onnx").stat().st_mtime_ns
    (d.parent / f".{d.name}.tmp-999999").mkdir()  # left by a crashed export
    again = make_text_encoder(onnx_encoder.settings)
    np.testing.assert_allclose(again.encode(TEXTS[:2]), onnx_encoder.encode(TEXTS[:2]), atol=1e-6)
    assert (d / "model.onnx").stat().st_mtime_ns == mtime  # not exported again


def test_a_missing_model_is_named(tmp_path):
    enc = make_text_encoder(TextEncoderSettings(backend="onnx", model=str(tmp_path / "no-such-model"), onnx_dir=tmp_path / "x"))
    with pytest.raises(BadInput, match="no-such-model"):
        enc.encode(["x"])
    assert not (tmp_path / "x").exists() or not any(p for p in (tmp_path / "x").iterdir() if not p.name.startswith("."))


def test_searcher_with_onnx_backend_ranks_like_pytorch(tiny_index, settings, tmp_path):
    from semsearch.search import Searcher

    torch_hits = Searcher(tiny_index, settings).search("how do plants make sugar from light", k=5, mode="dense").hits
    s2 = settings.model_copy(deep=True)
    s2.text_encoder.backend = "onnx"
    s2.text_encoder.onnx_dir = tmp_path / "onnx"
    onnx_hits = Searcher(tiny_index, s2).search("how do plants make sugar from light", k=5, mode="dense").hits
    assert [h.id for h in onnx_hits] == [h.id for h in torch_hits]
    assert onnx_hits[0].id == "d3"
    np.testing.assert_allclose([h.score for h in onnx_hits], [h.score for h in torch_hits], atol=1e-4)


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    from semsearch.encoders.onnx import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "semsearch" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == type(tmp_path).home() / ".cache" / "semsearch" / "onnx"
    assert os.sep in str(default_cache_dir())


def test_an_export_racing_a_finished_one_keeps_the_finished_one(onnx_encoder, tmp_path):
    import shutil

    from semsearch.encoders.onnx import export_text_encoder
    from semsearch.encoders.sbert import default_model_path

    done = tmp_path / "export"
    shutil.copytree(onnx_encoder.export_dir, done)  # what another process renamed into place
    before = {p.name: p.stat().st_mtime_ns for p in done.iterdir()}
    assert export_text_encoder(default_model_path(), done) == done
    assert {p.name: p.stat().st_mtime_ns for p in done.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary directory left


def test_passage_cuts_are_the_same_with_either_backend(onnx_encoder, minilm):
    """Hits recompute their passage's offsets with the query encoder (often ONNX) that the
    document encoder (often PyTorch) cut: the word pieces and the window must agree."""
    from semsearch.config import PassageSettings
    from semsearch.documents import Document
    from semsearch.encoders import passages as P

    assert onnx_encoder.token_spans(TEXTS[:2] + TEXTS[4:])[0].tolist() == minilm.token_spans(TEXTS[:2] + TEXTS[4:])[0].tolist()
    plan = P.plan_for(PassageSettings(enabled=True), minilm)
    assert plan == P.plan_for(PassageSettings(enabled=True), onnx_encoder) and plan.window == 254
    doc = Document(id="x", title="Long", text=" ".join(TEXTS) * 40)
    assert P.split(onnx_encoder, "{title} {text}", [doc], plan) == P.split(minilm, "{title} {text}", [doc], plan)


def test_int8_weights_are_made_once_beside_the_export_and_stay_close_to_fp32(onnx_encoder, minilm):
    """``onnx_int8``: the export's weights quantized per channel into model_int8.onnx (kept
    for the next start); vectors near the fp32 ones, and the fp32 export untouched."""
    settings = onnx_encoder.settings.model_copy(update={"onnx_int8": True})
    int8 = make_text_encoder(settings)
    texts = [t for t in TEXTS if t]
    v = int8.encode(texts)
    path = onnx_encoder.export_dir / "model_int8.onnx"
    assert path.exists() and not list(onnx_encoder.export_dir.glob(".model_int8.tmp-*"))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    cos = (v * minilm.encode(texts)).sum(1)
    assert cos.min() > 0.97 and cos.max() < 1 - 1e-5  # close, and really quantized
    mtime = path.stat().st_mtime_ns
    again = make_text_encoder(settings)
    np.testing.assert_allclose(again.encode(texts), v, atol=1e-6)
    assert path.stat().st_mtime_ns == mtime  # reused, not made again
    np.testing.assert_allclose(onnx_encoder.encode(texts), minilm.encode(texts), atol=2e-5)
