"""A tiny real training run (CI's smoke test): the loss falls, the ranking improves, the saved
model reloads and scores identically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semsearch.collection import Collection
from semsearch.config import RerankSettings
from semsearch.rerank.cross_encoder import CrossEncoderReranker
from semsearch.rerank.train.mining import Example, NegativeMiner
from semsearch.rerank.train.stages import StageConfig, train_stage

pytest.importorskip("datasets")
pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm):
    """Title -> text matching on the tiny corpus, text field only (the title is the query)."""
    from semsearch.config import Settings
    from semsearch.documents import Document
    from semsearch.indexer.index import Index
    from tests.conftest import TINY_DOCS

    settings = Settings(no_progress=True)
    settings.text_encoder.device = "cpu"
    docs = [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in TINY_DOCS]
    path = tmp_path_factory.mktemp("ix") / "index"
    with Index.create(path, settings) as idx:
        idx.ensure_channel("dense", dim=minilm.dim, encoder=minilm.name)
        idx.write(docs, {"dense": minilm.encode([f"{d.title} {d.text}" for d in docs])})
        idx.sync()
    col = Collection.open(path, settings, encoder=minilm)
    examples = [Example(qid=d.id, query=d.title.lower(), positives=[d.id]) for d in docs]
    NegativeMiner(col, pool=12, fn_ratio=None, seed=0).mine(examples, n_negatives=3)
    out = tmp_path_factory.mktemp("ce") / "stage1"
    cfg = StageConfig(
        stage=1, out=out, max_length=48, negatives=3, epochs=6, batch_size=8,
        learning_rate=1e-4, eval_steps=12, patience=10, dev_depth=12, fields=("text",), seed=3,
    )
    said: list[str] = []
    card = train_stage(cfg, examples, examples, col, say=said.append)
    card["said"] = said
    return card, out, docs


def test_loss_falls_and_ranking_improves(trained) -> None:
    card, out, _ = trained
    losses = [h["loss"] for h in card["history"] if "loss" in h]
    assert len(losses) >= 4
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < 0.8 * first, losses
    m = card["metrics"]
    assert m["dev_ndcg@10_best"] > m["dev_ndcg@10_before"] + 0.1, m


def test_training_progress_comes_as_lines(trained) -> None:
    card, _, _ = trained
    steps = card["metrics"]["steps"]
    # a line per log record, the loss and the dev metric named (the Trainer's own printer,
    # which wrote raw dicts on stdout, is replaced)
    assert any(line.startswith("[stage 1] step ") and f"/{steps}: loss " in line for line in card["said"])
    assert any("eval_dev_ndcg@10" in line for line in card["said"])


def test_model_card_records_the_run(trained) -> None:
    card, out, _ = trained
    saved = json.loads((out / "training.json").read_text())
    for key in ("base_model", "data", "counts", "stage", "hyperparameters", "seed", "metrics"):
        assert key in saved
    assert saved["counts"]["positive_pairs"] == 12 and saved["counts"]["negative_pairs"] == 36
    assert "semsearch training (stage 1)" in (out / "README.md").read_text()


def test_saved_model_reloads_and_scores_identically(trained) -> None:
    card, out, docs = trained
    for backend in ("torch", "auto"):  # auto = int8 ONNX on CPU
        settings = RerankSettings(model=str(out), max_length=48, fields=["text"], device="cpu", backend=backend)
        a = CrossEncoderReranker(settings).score("honeybees", docs)
        b = CrossEncoderReranker(settings).score("honeybees", docs)
        assert np.allclose(a, b, atol=1e-6)
        assert int(np.argmax(a)) == [d.id for d in docs].index("d11")


def test_onnx_export_scores_like_torch(trained) -> None:
    pytest.importorskip("onnxruntime")
    from semsearch.rerank.onnx import export_onnx

    card, out, docs = trained
    paths = export_onnx(out)
    base = dict(model=str(out), max_length=48, fields=["text"], device="cpu")
    torch_scores = CrossEncoderReranker(RerankSettings(**base, backend="torch")).score("honeybees", docs)
    fp32 = CrossEncoderReranker(RerankSettings(**base, backend="onnx", onnx_file=paths["fp32"].name)).score("honeybees", docs)
    int8 = CrossEncoderReranker(RerankSettings(**base, backend="onnx")).score("honeybees", docs)
    assert np.allclose(torch_scores, fp32, atol=1e-4)
    assert int(np.argmax(int8)) == int(np.argmax(torch_scores))
    auto = CrossEncoderReranker(RerankSettings(**base))  # the default: int8 ONNX for a trained model on CPU
    assert np.allclose(auto.score("honeybees", docs), int8, atol=1e-6) and auto.backend == "onnx"
    untrained = CrossEncoderReranker(RerankSettings(max_length=48, device="cpu"))
    untrained.score("honeybees", docs[:2])
    assert untrained.backend == "torch"  # the untrained head has no directory to export


def test_long_query_is_scored_at_its_own_length_on_both_backends(trained) -> None:
    """A query too long for max_length is scored with longer pairs for that call only: the
    same scores as a reranker set to that length, and the next query is back at max_length.
    With long_queries="error" it is refused, as training refuses it."""
    pytest.importorskip("onnxruntime")
    from semsearch.errors import BadInput
    from semsearch.rerank.onnx import export_onnx

    card, out, docs = trained
    export_onnx(out)
    query = "which insects pollinate crops and make honey in hives " * 3
    for backend in ("torch", "onnx"):
        base = dict(model=str(out), fields=["text"], device="cpu", backend=backend)
        r = CrossEncoderReranker(RerankSettings(**base, max_length=32))
        length = r.layout.pair_length(query)
        assert length > 32
        got = r.score(query, docs)
        wide = CrossEncoderReranker(RerankSettings(**base, max_length=length))
        assert wide.layout.pair_length(query) == length
        assert np.allclose(got, wide.score(query, docs), atol=1e-5), backend
        after = r.score("honeybees", docs)  # back at 32 tokens
        assert np.allclose(after, CrossEncoderReranker(RerankSettings(**base, max_length=32)).score("honeybees", docs),
                           atol=1e-5), backend
        with pytest.raises(BadInput, match="never truncated"):
            CrossEncoderReranker(RerankSettings(**base, max_length=32, long_queries="error")).score(query, docs)


def test_onnx_backend_exports_on_first_use_and_leaves_no_partial_files(trained, tmp_path) -> None:
    """backend=onnx on a model directory with no export writes one (the int8 file asked for
    and its fp32 source) through a temporary directory, then scores like an explicit export."""
    pytest.importorskip("onnxruntime")
    import shutil

    card, out, docs = trained
    copy = tmp_path / "model"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("onnx", "checkpoints"))
    assert not (copy / "onnx").exists()
    base = dict(fields=["text"], device="cpu", max_length=48, backend="onnx")
    got = CrossEncoderReranker(RerankSettings(model=str(copy), **base)).score("honeybees", docs)
    assert sorted(p.name for p in (copy / "onnx").iterdir()) == ["model.onnx", "model_int8.onnx"]
    from semsearch.rerank.onnx import export_onnx

    export_onnx(out)
    assert np.allclose(got, CrossEncoderReranker(RerankSettings(model=str(out), **base)).score("honeybees", docs),
                       atol=1e-5)


def test_fp32_onnx_is_exported_beside_a_published_int8_file_which_stays_as_it_is(trained, tmp_path) -> None:
    """A reranker fetched from the cluster has its int8 export but not the fp32 one
    (store_es.models leaves it out): asking for fp32 exports it and leaves the int8 file alone."""
    pytest.importorskip("onnxruntime")
    import shutil

    from semsearch.rerank.onnx import export_onnx

    card, out, docs = trained
    export_onnx(out)
    copy = tmp_path / "fetched"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("model.onnx", "checkpoints"))
    int8 = copy / "onnx" / "model_int8.onnx"
    before = (int8.read_bytes(), int8.stat().st_ino)
    base = dict(fields=["text"], device="cpu", max_length=48, backend="onnx")
    got = CrossEncoderReranker(RerankSettings(model=str(copy), onnx_file="model.onnx", **base)).score("honeybees", docs)
    assert (copy / "onnx" / "model.onnx").is_file()
    assert (int8.read_bytes(), int8.stat().st_ino) == before  # not quantised and replaced again
    want = CrossEncoderReranker(RerankSettings(model=str(out), onnx_file="model.onnx", **base)).score("honeybees", docs)
    assert np.allclose(got, want, atol=1e-5)


def test_auto_backend_falls_back_to_torch_when_export_fails(trained, tmp_path, caplog) -> None:
    import shutil

    card, out, docs = trained
    copy = tmp_path / "model"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("onnx", "checkpoints"))
    (copy / "onnx").write_text("not a directory")  # the export cannot write here
    base = dict(max_length=48, fields=["text"], device="cpu")
    auto = CrossEncoderReranker(RerankSettings(model=str(copy), **base))
    with caplog.at_level("WARNING"):
        got = auto.score("honeybees", docs)
    assert auto.backend == "torch" and "using PyTorch" in caplog.text
    torch_scores = CrossEncoderReranker(RerankSettings(model=str(copy), backend="torch", **base)).score("honeybees", docs)
    assert np.allclose(got, torch_scores, atol=1e-6)
    from semsearch.errors import BadInput

    with pytest.raises(BadInput, match="cannot export"):  # asked for explicitly: no fallback
        CrossEncoderReranker(RerankSettings(model=str(copy), backend="onnx", **base)).score("honeybees", docs)


def test_concurrent_scoring_from_threads_matches_sequential(trained) -> None:
    """The API scores from several worker threads; a shared fast tokenizer must not be
    used concurrently (it once gave ragged batches and HTTP 500s under load)."""
    pytest.importorskip("onnxruntime")
    from concurrent.futures import ThreadPoolExecutor

    from semsearch.rerank.onnx import export_onnx

    card, out, docs = trained
    export_onnx(out)
    for backend in ("torch", "onnx"):
        r = CrossEncoderReranker(RerankSettings(model=str(out), max_length=48, fields=["text"], device="cpu", backend=backend))
        queries = ["honeybees", "how do plants make sugar from sunlight and water", "chess", "a much longer query " * 6]
        # different batch sizes per query (int8 activations depend on the batch's padding, so
        # each result is compared with the same call made sequentially)
        subset = {q: docs[: 3 + len(q) % 5] for q in queries}
        expected = {q: r.score(q, subset[q]) for q in queries}
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda q, r=r, subset=subset: (q, r.score(q, subset[q])), queries * 6))
        for q, scores in got:
            assert np.allclose(scores, expected[q], atol=1e-5), (backend, q)
