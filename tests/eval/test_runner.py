"""Runner mechanics: config resolution, skipping, the reranker hook. The hashing encoder
stands in for the model (the model is beside the point here)."""

from __future__ import annotations

import pytest

from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.eval.configs import resolve_configs
from semsearch.eval.datasets import load_beir
from semsearch.eval.runner import ensure_index, evaluate
from tests.conftest import HashingEncoder


class ShortestFirst:
    """A stand-in with the ``Reranker`` protocol (``score(query, documents)``): shorter
    documents score higher, so its effect on the run is predictable."""

    def score(self, query, documents):  # noqa: ANN001, ANN201
        return [-float(len(d.text)) for d in documents]


@pytest.fixture
def tiny_eval(tiny_beir, tmp_path):
    s = Settings()
    s.no_progress = True
    ds = load_beir(tiny_beir, "test")
    enc = HashingEncoder(dim=256)
    idx, info = ensure_index(ds, tmp_path / "index", s, enc)
    yield ds, idx, info, s, enc
    idx.close()


def test_rerank_variants_use_the_reranker(tiny_eval):
    ds, idx, info, s, enc = tiny_eval
    cfgs = resolve_configs(["lexical", "hybrid-rrf"], s, rerank=True)
    assert [c.name for c in cfgs] == ["lexical", "lexical+rerank", "hybrid-rrf", "hybrid-rrf+rerank"]
    s.rerank.depth = 1000  # rerank every candidate of the tiny corpus
    s.rerank.blend = 0.0  # and let the reranker alone order them
    res = evaluate(ds, idx, info, cfgs, s, reranker=ShortestFirst(), latency_queries=2)
    assert list(res.runs) == [c.name for c in cfgs]
    docs = idx.get([d for r in res.runs["lexical"].values() for d in r])
    for qid, run in res.runs["lexical+rerank"].items():
        assert set(run) == set(res.runs["lexical"][qid])
        lengths = [len(docs[d].text) for d in run]
        assert lengths == sorted(lengths)


class LongestFirst(ShortestFirst):
    def score(self, query, documents):  # noqa: ANN001, ANN201
        return [float(len(d.text)) for d in documents]


def test_named_rerankers_make_one_variant_each_and_each_uses_its_own(tiny_eval):
    ds, idx, info, s, enc = tiny_eval
    cfgs = resolve_configs(["lexical", "lexical+rerank:long"], s, rerankers=["short", "long"])
    assert [c.name for c in cfgs] == ["lexical", "lexical+rerank:short", "lexical+rerank:long"]
    assert cfgs[1].describe()["rerank"] == "short"
    s.rerank.depth, s.rerank.blend = 1000, 0.0
    res = evaluate(ds, idx, info, cfgs, s, latency_queries=1,
                   reranker={"short": ShortestFirst(), "long": LongestFirst()})
    docs = idx.get([d for r in res.runs["lexical"].values() for d in r])
    for qid in res.runs["lexical"]:
        short = [len(docs[d].text) for d in res.runs["lexical+rerank:short"][qid]]
        long_ = [len(docs[d].text) for d in res.runs["lexical+rerank:long"][qid]]
        assert short == sorted(short) and long_ == sorted(long_, reverse=True)
    res = evaluate(ds, idx, info, resolve_configs(["lexical+rerank:other"], s) + cfgs[:1], s,
                   latency_queries=1, reranker={"short": ShortestFirst()})
    assert res.skipped == {"lexical+rerank:other": "no reranker named 'other' given (--reranker NAME=DIR; given: short)"}


def test_reranker_specs_are_parsed_and_bad_ones_named(tmp_path):
    from semsearch.eval.api import parse_rerankers

    assert parse_rerankers(None) == {}
    assert parse_rerankers(tmp_path) == {"": tmp_path}
    assert parse_rerankers([f"s1={tmp_path}/a", f"s1+2={tmp_path}/b"]) == {"s1": tmp_path / "a", "s1+2": tmp_path / "b"}
    with pytest.raises(BadInput, match="name each one"):
        parse_rerankers([str(tmp_path), f"x={tmp_path}"])
    with pytest.raises(BadInput, match="given twice"):
        parse_rerankers([f"x={tmp_path}", f"x={tmp_path}"])
    with pytest.raises(BadInput, match="NAME in NAME=DIR"):
        parse_rerankers([f"a b={tmp_path}"])
    with pytest.raises(BadInput, match=r"unknown eval config 'lexical\+rerankx'"):
        resolve_configs(["lexical+rerankx"], Settings())


def test_rerank_configs_are_skipped_without_a_reranker(tiny_eval):
    ds, idx, info, s, enc = tiny_eval
    res = evaluate(ds, idx, info, resolve_configs(["lexical", "dense+rerank"], s), s, latency_queries=1)
    assert list(res.runs) == ["lexical"]
    assert res.skipped == {"dense+rerank": "no reranker given (--reranker DIR)"}


def test_nothing_runnable_is_an_error(tiny_eval):
    ds, idx, info, s, enc = tiny_eval
    with pytest.raises(BadInput, match=r"no eval config could run here: image-by-text: the index has no image channel"):
        evaluate(ds, idx, info, resolve_configs(["image-by-text"], s), s)
    with pytest.raises(BadInput, match="baseline 'dense' was not run"):
        evaluate(ds, idx, info, resolve_configs(["lexical"], s), s, baseline="dense")


def test_caption_set_needs_an_image_index(tmp_path):
    from semsearch.eval.datasets import load_captions
    from tests.eval.test_datasets import _caption_set

    ds = load_captions(_caption_set(tmp_path / "caps", [("sun.jpg", "the sun")]))
    with pytest.raises(BadInput, match="build it with the image indexer and pass --index DIR"):
        ensure_index(ds, tmp_path / "index", Settings())


def test_judged_documents_missing_from_the_index_are_counted(tiny_beir, tmp_path):
    with open(tiny_beir / "qrels" / "test.tsv", "a") as fh:
        fh.write("t1\tghost-doc\t1\n")
    ds = load_beir(tiny_beir, "test")
    idx, info = ensure_index(ds, tmp_path / "index", Settings(), HashingEncoder(dim=64))
    idx.close()
    assert info.missing_judged == 1 and info.documents == 12


def test_reranker_path_errors(tmp_path):
    from semsearch.eval.api import load_reranker
    from semsearch.rerank.cross_encoder import CrossEncoderReranker

    with pytest.raises(BadInput, match="reranker .*nope does not exist"):
        load_reranker(tmp_path / "nope", Settings())
    r = load_reranker(tmp_path, Settings())
    assert isinstance(r, CrossEncoderReranker) and r.settings.model == str(tmp_path)


@pytest.mark.integration
def test_lexical_es_config_runs_against_a_real_server(tiny_eval, es_names, es_url):
    """lexical-es indexes the same documents into a dedicated Elasticsearch index and ranks
    like the embedded BM25 on this tiny set (same top hit for every judged query)."""
    ds, idx, info, s, enc = tiny_eval
    s.lexical.elasticsearch.url = es_url
    s.lexical.elasticsearch.index = es_names("eval")
    s.lexical.elasticsearch.analyzer = "standard"
    res = evaluate(ds, idx, info, resolve_configs(["lexical", "lexical-es"], s), s, latency_queries=1)
    assert not res.skipped and list(res.runs) == ["lexical", "lexical-es"]
    for qid, run in res.runs["lexical-es"].items():
        assert run, qid
    assert res.means["lexical-es"]["ndcg@10"] > 0.5


def test_another_index_is_reported_beside_with_its_own_tuned_defaults(tiny_beir, tmp_path, minilm, monkeypatch):
    # the index before/after `semsearch adapt` side by side: "tuned" is a copy of the index
    # whose recorded defaults (Manifest.tuned) make hybrid lexical only
    import json
    import shutil

    from semsearch.eval.api import run_eval
    from semsearch.indexer.manifest import read_manifest, write_manifest

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    base = run_eval(tiny_beir, "test", tmp_path / "r1", s, configs=["lexical", "hybrid-index"],
                    encoder=minilm, latency_queries=2)
    shutil.copytree(tmp_path / "r1" / "index", tmp_path / "tuned")
    m = read_manifest(tmp_path / "tuned")
    m.tuned = {"fusion": {"method": "rrf", "weights": {"lexical": 1.0, "dense": 0.0}}}
    write_manifest(tmp_path / "tuned", m)

    from semsearch.eval import metrics

    tested = []  # the significance tests run once, over every run of both indexes
    real = metrics.significance
    monkeypatch.setattr(metrics, "significance", lambda qrels, runs, *a, **kw: tested.append(list(runs))
                        or real(qrels, runs, *a, **kw))
    out = run_eval(tiny_beir, "test", tmp_path / "r2", s, configs=["lexical", "hybrid-index"],
                   index_dir=tmp_path / "r1" / "index", encoder=minilm, latency_queries=2,
                   compare_index=[f"tuned={tmp_path / 'tuned'}"], baseline="hybrid-index[tuned]")
    r = out.result
    assert list(r.runs) == ["lexical", "hybrid-index", "lexical[tuned]", "hybrid-index[tuned]"]
    assert tested == [list(r.runs)]
    assert r.runs["hybrid-index"] == base.result.runs["hybrid-index"]  # the main index as before
    # same corpus, same lexical index: identical; the tuned hybrid ranks as lexical does
    assert r.runs["lexical[tuned]"].keys() == r.runs["lexical"].keys()
    for q, docs in r.runs["lexical"].items():
        lex = list(docs)[:10]
        assert list(r.runs["lexical[tuned]"][q])[:10] == lex
        # dense weight 0: its candidates add nothing, so they come after the lexical ones
        assert list(r.runs["hybrid-index[tuned]"][q])[: len(lex)] == lex
    assert r.runs["hybrid-index[tuned]"] != r.runs["hybrid-index"]
    # tested against the chosen baseline, which is a compared config
    assert r.baseline == "hybrid-index[tuned]" and set(r.significance) >= {"lexical", "hybrid-index", "lexical[tuned]"}
    data = json.loads(out.paths["results"].read_text())
    assert list(data["configs"]) == list(r.runs)
    assert data["compared_indexes"]["tuned"]["path"] == str(tmp_path / "tuned")
    assert "Index `tuned`" in out.paths["markdown"].read_text()
    assert (tmp_path / "r2" / "runs" / "hybrid-index[tuned].trec").exists()


def test_compared_index_specs_are_checked(tmp_path):
    from semsearch.eval.api import parse_compared

    with pytest.raises(BadInput, match="give NAME=DIR"):
        parse_compared([str(tmp_path)])
    with pytest.raises(BadInput, match="is not an index"):
        parse_compared([f"x={tmp_path}"])
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(BadInput, match="given twice"):
        parse_compared([f"x={tmp_path}", f"x={tmp_path}"])
    assert parse_compared([f"before={tmp_path}"]) == {"before": tmp_path}


def test_hybrid_index_reranks_when_the_index_says_so(tiny_beir, tmp_path, minilm):
    """``hybrid-index`` is the index's own defaults, reranking included: `semsearch adapt` can
    turn the reranker on in the manifest. (It passed rerank=False and evaluated the adapted
    index without its reranker.)"""
    from semsearch.eval.api import run_eval
    from semsearch.indexer.manifest import read_manifest, write_manifest
    from semsearch.rerank.cross_encoder import load_cross_encoder

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    s.rerank.backend = "torch"
    base = run_eval(tiny_beir, "test", tmp_path / "r1", s, configs=["hybrid", "hybrid-index"],
                    encoder=minilm, latency_queries=1).result
    assert base.runs["hybrid-index"] == base.runs["hybrid"]  # nothing tuned: the settings
    idx = tmp_path / "r1" / "index"
    load_cross_encoder(None, device="cpu", max_length=64).save(str(idx / "models" / "rr"))
    m = read_manifest(idx)
    m.tuned = {"rerank": {"enabled": True, "model": "models/rr", "blend": 0.0, "depth": 5}}
    write_manifest(idx, m)
    r = run_eval(tiny_beir, "test", tmp_path / "r2", s, configs=["hybrid", "hybrid-index"], index_dir=idx,
                 encoder=minilm, latency_queries=1).result
    assert r.runs["hybrid"] == base.runs["hybrid"]  # "hybrid" says rerank=False
    assert r.runs["hybrid-index"] != r.runs["hybrid"]  # the top 5 by the (untrained) cross-encoder
    for q, docs in r.runs["hybrid-index"].items():
        assert set(list(docs)[:5]) == set(list(r.runs["hybrid"][q])[:5])  # reordered, not replaced
