from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from semsearch.adapt import heldout as H
from semsearch.adapt.dense import DenseTrainConfig
from semsearch.adapt.fusion import select_fusion
from semsearch.adapt.runner import Adapter, AdaptOptions
from tests.adapt.conftest import (
    RRF7_LEXICAL_ONLY,
    assert_searches_use_rrf7_lexical_only,
    topic_docs,
)
from tests.conftest import semsearch_cmd, subprocess_env


def _docs():
    from semsearch.documents import Document

    return [Document(id=d["_id"], title=d["title"], text=d["text"]) for d in topic_docs()]


def test_held_out_positives_lose_the_query_span(settings):
    train, dev = H.mine_split(_docs(), sample=20, dev=6, seed=1)
    assert len(dev) == 6 and len(train) == 14
    # a corpus that gives fewer pseudo-queries than asked holds out the same share of them
    # (it held out all of them, leaving nothing to train on)
    small_train, small_dev = H.mine_split(_docs(), sample=10_000, dev=3_000, seed=1)
    n = len(small_train) + len(small_dev)
    assert n < 10_000 and len(small_dev) == round(n * 0.3) and small_train
    copy = H.HeldOutCopy(_docs(), dev, settings.lexical, informative=True)
    trivial = H.HeldOutCopy(_docs(), dev, settings.lexical, informative=False)
    assert not trivial.replaced
    for e in dev:
        (pos,) = e.positives
        judged = copy.replaced[pos]
        # the verbatim span (a sentence, or the title) is gone from the judged copy
        assert e.query not in judged.text and e.query != judged.title
        original = next(d for d in _docs() if d.id == pos)
        assert e.query in original.text or e.query == original.title
    # and the lexical copy holds the stripped text: its BM25 score for the query drops
    q = dev[0].query
    s_trivial = dict(trivial.lexical_results([q], 30)[0])[dev[0].positives[0]]
    s_inf = dict(copy.lexical_results([q], 30)[0]).get(dev[0].positives[0], 0.0)
    assert s_inf < s_trivial


def test_dense_copy_re_encodes_only_the_held_out_positives(settings, minilm):
    import numpy as np

    _, dev = H.mine_split(_docs(), sample=10, dev=3, seed=2)
    copy = H.HeldOutCopy(_docs(), dev, settings.lexical)
    base = minilm.encode([H.doc_text(d, "{title} {text}") for d in _docs()])
    mat = copy.dense_matrix(base, minilm, "{title} {text}")
    changed = {copy.ids[i] for i in np.where(np.abs(mat - base).max(axis=1) > 1e-6)[0]}
    assert changed == {e.positives[0] for e in dev}


def _channels(useless: str, n_queries: int = 40, n_docs: int = 50):
    rng = random.Random(0)
    per, qrels = {}, {}
    for q in range(n_queries):
        pos = f"d{q}"
        good = [pos] + [f"d{i}" for i in rng.sample(range(n_queries, n_docs + n_queries), 20)]
        bad = [f"d{i}" for i in rng.sample(range(n_queries, n_docs + n_queries), 21)]
        lists = {"lexical": bad if useless == "lexical" else good, "dense": bad if useless == "dense" else good}
        per[f"q{q}"] = {c: [(d, 10.0 - i * 0.1) for i, d in enumerate(ids)] for c, ids in lists.items()}
        qrels[f"q{q}"] = {pos: 1}
    return per, qrels


@pytest.mark.parametrize("useless", ["lexical", "dense"])
def test_fusion_selection_gives_a_useless_channel_no_weight_to_spoil(useless):
    from semsearch.config import Settings

    per, qrels = _channels(useless)
    res = select_fusion(per, qrels, default=Settings().fusion.model_dump())
    good = "dense" if useless == "lexical" else "lexical"
    assert res["channels"][good] == pytest.approx(1.0)
    assert res["score"] >= res["channels"][good] - 1e-9  # never below the best single channel
    assert res["default_score"] < res["score"]
    w = res["chosen"]["weights"]
    assert w[good] > w[useless]


def test_fusion_selection_keeps_the_default_on_a_tie():
    from semsearch.config import Settings

    per, qrels = _channels("dense")
    for ch in per.values():  # both channels rank every positive first: every fusion scores 1.0
        ch["dense"] = list(ch["lexical"])
    default = Settings().fusion.model_dump()
    for alpha in (0.05, None):
        res = select_fusion(per, qrels, default=default, alpha=alpha)
        assert res["default_score"] == res["score"] == pytest.approx(1.0)
        chosen = res["chosen"]
        assert (chosen["method"], chosen["weights"], chosen["depth"]) == (
            default["method"], default["weights"], default["depth"]), res["why"]
        assert "no better" in res["why"] and "the default stays" in res["why"]


def test_manifest_tuned_defaults_are_used_unless_a_request_or_setting_overrides(tiny_index, minilm, settings):
    from semsearch.config import Settings
    from semsearch.indexer.index import Index
    from semsearch.indexer.manifest import read_manifest, write_manifest
    from semsearch.search import Searcher

    path = tiny_index.path
    tiny_index.close()
    with Index.open(path, settings, writable=True) as idx:
        idx.manifest.tuned = {"fusion": RRF7_LEXICAL_ONLY}
        write_manifest(idx.path, idx.manifest)
    assert read_manifest(path).tuned["fusion"]["rrf_k"] == 7
    with Index.open(path, settings) as idx:
        s = Searcher(idx, settings, encoder=minilm)
        assert s.settings.fusion.method == "rrf" and s.settings.fusion.rrf_k == 7
        assert_searches_use_rrf7_lexical_only(s, "plants and sunlight")  # unless a request says otherwise
        # so does a setting the user set explicitly
        explicit = Settings()
        explicit.text_encoder.device = "cpu"
        explicit.fusion.method = "convex"
        assert Searcher(idx, explicit, encoder=minilm).settings.fusion.method == "convex"
        assert Searcher(idx, explicit, encoder=minilm).settings.fusion.rrf_k == 7


def test_adapt_is_resumable_and_records_fusion(topic_index, settings):
    from semsearch.indexer.manifest import read_manifest

    opts = AdaptOptions(sample=14, dev=8, dense=False, reranker=False)
    said: list[str] = []
    state = Adapter(topic_index, settings, opts, say=said.append).run()
    assert set(state) >= {"mine", "baseline", "dense", "fusion", "reranker", "apply", "report"}
    base = state["baseline"]["result"]
    # the informative judge is harder than the trivial one
    assert base["informative"]["hybrid"] <= base["trivial"]["hybrid"]
    tuned = read_manifest(topic_index).tuned
    assert tuned["fusion"] == state["fusion"]["result"]["chosen"]
    assert "dense_encoder" not in tuned
    assert (topic_index / "adapt" / "report" / "adapt.md").exists()
    pseudo = json.loads((topic_index / "adapt" / "report" / "pseudo" / "results.json").read_text())
    # adapt scores saved runs and times nothing: the report says so instead of showing 0 ms
    assert {lat["p50"] for lat in pseudo["latency_ms"].values()} == {None}
    assert "Latency: not measured" in (topic_index / "adapt" / "report" / "pseudo" / "report.md").read_text()
    said.clear()
    Adapter(topic_index, settings, opts, say=said.append).run()
    assert sum("skipped" in m for m in said) == 7


def test_dense_fine_tune_end_to_end_and_the_index_searches_with_it(topic_index, settings, capfd):
    import subprocess

    from semsearch.collection import Collection
    from semsearch.indexer.manifest import read_manifest

    opts = AdaptOptions(sample=16, dev=6, reranker=False, min_gain=-1.0,  # keep it whatever it scores
                        dense_config=DenseTrainConfig(batch_size=4, max_steps=2, max_seq_length=64))
    said: list[str] = []
    state = Adapter(topic_index, settings, opts, say=said.append).run()
    assert state["dense"]["result"]["kept"]
    # training progress comes as lines through `say`, not as the Trainer's printed dicts
    assert "[dense] step 1/2: loss" in "\n".join(said)
    assert "{'loss'" not in capfd.readouterr().out
    assert any("only 6 held-out pseudo-queries" in m for m in said)  # a tiny corpus is told so
    m = read_manifest(topic_index)
    adapted = (topic_index / "models" / "dense-adapted").resolve()
    assert m.tuned["dense_encoder"] == "models/dense-adapted"
    # recorded relative to the index: an index copied, moved or restored elsewhere names its
    # own copy of the model (an absolute path made the copy refuse to search)
    assert m.channels["dense"].encoder == "./models/dense-adapted"
    settings.text_encoder.query_backend = "torch"
    with Collection.open(topic_index, settings) as col:
        res = col.search("how bees collect pollen in the hive", mode="dense", k=3)
        assert col.encoder.name == str(adapted)
        assert res.hits and res.hits[0].id == "t02"
        segments = [(g.name, g.n_deleted) for g in col.index.manifest.segments]
    # adapt run again to add a reranker: the encoder stays, the documents are not rewritten
    opts.reranker, opts.reranker_max_pairs, opts.reranker_max_steps = True, 16, 2
    state = Adapter(topic_index, settings, opts, say=lambda m: None).run()
    assert state["apply"]["result"]["reencode"] == {"encoder": "models/dense-adapted", "unchanged": True}
    m = read_manifest(topic_index)
    assert m.tuned["dense_encoder"] == "models/dense-adapted" and m.tuned["rerank"]["enabled"]
    with Collection.open(topic_index, settings) as col:
        assert [(g.name, g.n_deleted) for g in col.index.manifest.segments] == segments
        assert col.search("how bees collect pollen in the hive", mode="dense", k=3).hits[0].id == "t02"
    moved = topic_index.parent / "moved"
    topic_index.rename(moved)
    with Collection.open(moved, settings) as col:
        res = col.search("how bees collect pollen in the hive", mode="dense", k=3)
        assert col.encoder.name == str((moved / "models" / "dense-adapted").resolve())
        assert res.hits and res.hits[0].id == "t02"
    # `semsearch index` into the adapted index encodes with the index's own fine-tuned encoder
    # (it used the configured default and was refused: "built with encoder ...")
    new = moved.parent / "new.jsonl"
    new.write_text(json.dumps({"id": "n1", "text": "Honeybees carry pollen home in baskets on their legs."}) + "\n")
    p = subprocess.run(semsearch_cmd("index", "--input", str(new), "--index", str(moved), "--json"),
                       env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with Collection.open(moved, settings) as col:
        assert col.index.manifest.channels["dense"].encoder == "./models/dense-adapted"
        assert col.stats()["channels"]["dense"]["count"] == 25
        assert "n1" in [h.id for h in col.search("honeybees pollen baskets legs", mode="dense", k=3).hits]


def _passage_index(tmp_path, minilm, settings) -> Path:
    """The topic documents indexed with a window of 24 word pieces, which cuts each
    four-sentence document into several passages."""
    from semsearch.config import PassageSettings
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    settings.text_encoder.passages = PassageSettings(enabled=True, window=24, overlap=4)
    src = tmp_path / "topics.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in topic_docs()), encoding="utf-8")
    path = tmp_path / "index"
    with Index.create(path, settings) as idx:
        Pipeline(idx, [TextChannel(minilm, passages=settings.text_encoder.passages)], settings).run([src])
    return path


def test_held_out_dense_scores_a_passage_index_as_its_searches_do(tmp_path, minilm, settings):
    """Settings are chosen on held-out queries: on a passage index their dense channel must
    rank and score documents by their passages (the best one by default), as searches do,
    not by each document's first window."""
    import numpy as np

    from semsearch.collection import Collection

    path = _passage_index(tmp_path, minilm, settings)
    ad = Adapter(path, settings, AdaptOptions(sample=16, dev=6, reranker=False), say=lambda m: None)
    base = ad.base_matrix()
    assert isinstance(base, list) and all(len(m) > 1 for m in base)
    copy = H.HeldOutCopy(ad.docs(), [], settings.lexical, informative=False)
    queries = ["readers of the article", "examples that explain the role", "discussed with care",
               "how the process changes over time"]
    got = copy.dense_results(minilm.encode(queries), copy.dense_matrix(base, minilm, ad.template, ad.plan),
                             10, **ad._aggregation())
    with Collection.open(path, settings) as col:
        for q, row in zip(queries, got):
            want = col.search(q, mode="dense", k=10, with_documents=False).hits
            assert [d for d, _ in row] == [h.id for h in want]
            np.testing.assert_allclose([s for _, s in row], [h.score for h in want], atol=1e-4)


def test_adapting_a_passage_index_re_encodes_every_passage(tmp_path, minilm, settings):
    import numpy as np

    from semsearch.encoders import passages as P
    from semsearch.encoders.sbert import SentenceTransformerEncoder
    from semsearch.indexer.index import Index

    path = _passage_index(tmp_path, minilm, settings)
    opts = AdaptOptions(sample=16, dev=6, reranker=False, min_gain=-1.0,  # keep it whatever it scores
                        dense_config=DenseTrainConfig(batch_size=4, max_steps=2, max_seq_length=64))
    assert Adapter(path, settings, opts, say=lambda m: None).run()["dense"]["result"]["kept"]
    with Index.open(path, settings) as idx:
        spec = idx.manifest.channels["dense"]
        plan = P.PassagePlan.from_record(spec.passages)
        assert plan == P.PassagePlan(window=24, overlap=4, max_passages=plan.max_passages)
        docs = _docs()
        stored = idx.store.passage_vectors([d.id for d in docs], "dense", spec.dim)
        spans = idx.store.passage_spans(docs, "dense")
        model = idx.channel_encoder("dense")
    adapted = SentenceTransformerEncoder(settings.text_encoder.model_copy(update={"model": model}))
    cuts, expected = P.encode_split(adapted, settings.text_encoder.doc_template, docs, plan)
    assert all(len(e) > 1 for e in expected)  # every document is several passages
    for got, want in zip(stored, expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)  # the adapted encoder's, passage by passage
    # the re-encoded passages keep their character spans in the store (searches cut nothing)
    assert set(spans) == {d.id for d in docs}
    for d, c in zip(docs, cuts):
        assert spans[d.id].tolist() == [list(x) for x in c]


def test_dense_keep_gate_needs_a_significant_gain():
    from semsearch.adapt.runner import keep_decision

    assert keep_decision(0.60, 0.65, 0.01)["kept"]
    assert not keep_decision(0.60, 0.65, 0.20)["kept"]  # a gain, but not significant
    assert not keep_decision(0.60, 0.58, 0.01)["kept"]  # significant, but a loss
    assert keep_decision(0.60, 0.58, 0.90, min_gain=-1.0)["kept"]  # tests: kept whatever it scores


def test_a_refused_fine_tune_is_removed_from_the_index(topic_index, settings):
    from semsearch.indexer.manifest import read_manifest

    opts = AdaptOptions(sample=16, dev=6, reranker=False, min_gain=10.0,  # no gain can pass
                        dense_config=DenseTrainConfig(batch_size=4, max_steps=2, max_seq_length=64))
    state = Adapter(topic_index, settings, opts, say=lambda m: None).run()
    dense = state["dense"]["result"]
    assert not dense["kept"] and dense["train"]["steps"] == 2
    # nothing searches with it, so it does not ride along in every copy of the index
    assert not (topic_index / "models" / "dense-adapted").exists()
    assert not (topic_index / "adapt" / "dense-card.json").exists()
    assert not list((topic_index / "adapt").glob("*-adapted"))
    assert dense["removed_mb"] > 10 and "were removed" in dense["why"]  # MiniLM is ~90 MB
    assert "dense_encoder" not in read_manifest(topic_index).tuned
    said: list[str] = []
    Adapter(topic_index, settings, opts, say=said.append).run()  # a re-run resumes: every step done
    assert sum("skipped" in m for m in said) == 7


def _judged_files(tmp_path: Path) -> tuple[Path, Path]:
    """BEIR queries.jsonl and qrels TSV: one judged query per topic document."""
    queries, qrels = tmp_path / "q.jsonl", tmp_path / "qrels.tsv"
    topics = topic_docs()
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": f"what about {d['title'].lower()}"}) + "\n"
                               for i, d in enumerate(topics)))
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\t{d['_id']}\t1\n" for i, d in enumerate(topics)))
    return queries, qrels


def test_with_qrels_the_dense_gate_is_the_held_out_judged_queries(topic_index, settings, tmp_path, monkeypatch):
    """With judged queries the fine-tuned encoder is kept or not on the held-out judged
    queries, not on the pseudo-queries: here the pseudo-queries' test is forced to say
    'significant' and the judged one 'not significant', so it must not be kept."""
    from semsearch.adapt import runner as R

    queries, qrels = _judged_files(tmp_path)
    opts = AdaptOptions(sample=12, dev=6, reranker=False, queries=queries, qrels=qrels, judged_dev_fraction=0.25,
                        dense_config=DenseTrainConfig(batch_size=4, max_steps=1, max_seq_length=64))
    ad = Adapter(topic_index, settings, opts, say=lambda m: None)
    for step in ("mine", "baseline"):
        ad.state[step] = {"seconds": 0, "result": getattr(ad, f"step_{step}")()}
    judged_ids = {e.qid for e in ad.examples("judged_dev")}
    judged_train = {e.qid for e in ad.examples("judged_train")}
    assert judged_ids and judged_train and not judged_ids & judged_train
    assert not judged_ids & {e.qid for e in ad.examples("dev")}

    def p_by_set(q, a, b):
        return 0.5 if set(q) == judged_ids else 0.001

    import semsearch.adapt.dense as D

    trained_on: list[str] = []
    real_finetune = D.finetune

    def spy(base, examples, *a, **kw):
        trained_on.extend(e.qid for e in examples)
        return real_finetune(base, examples, *a, **kw)

    gated: list[tuple] = []
    real_keep = R.keep_decision

    def keep_spy(base, adapted, p, **kw):
        gated.append((base, adapted, p))
        return real_keep(base, adapted, p, **kw)

    monkeypatch.setattr(D, "finetune", spy)
    monkeypatch.setattr(R, "_paired_p", p_by_set)
    monkeypatch.setattr(R, "keep_decision", keep_spy)
    res = ad.step_dense()
    # the judged training pairs join the dense training set, the held-out judged ones do not
    assert judged_train <= set(trained_on) and not judged_ids & set(trained_on)
    # the gate saw the judged held-out scores and their p-value, not the pseudo-queries'
    assert gated == [(res["judged_base_dense"], res["judged_adapted_dense"], 0.5)]
    assert res["on"].endswith("held-out judged queries")
    assert res["p_value"] == 0.5 and res["pseudo_p_value"] == 0.001
    assert not res["kept"]


def _run_with_first_relevant_at(qrels: dict, ranks: dict[str, int], n: int = 10) -> dict:
    """A run where each query's relevant document is at ``ranks[qid]`` (1-based)."""
    run = {}
    for qid, rel in qrels.items():
        (doc,) = rel
        others = [f"x{i}" for i in range(n - 1)]
        ranked = others[: ranks[qid] - 1] + [doc] + others[ranks[qid] - 1 :]
        run[qid] = {d: float(n - i) for i, d in enumerate(ranked)}
    return run


def test_reranking_is_turned_on_only_for_a_significant_held_out_gain():
    """The reranker step's rule, as the dense and fusion gates: the best blend must beat no
    reranking with paired t-test p < alpha. A gain on one query of twelve (the best of
    several blends can look like that by chance) leaves reranking off."""
    from semsearch.adapt.rerank import rerank_decision

    qrels = {f"q{i}": {f"d{i}": 1} for i in range(12)}
    base = _run_with_first_relevant_at(qrels, {q: 3 for q in qrels})
    everywhere = _run_with_first_relevant_at(qrels, {q: 1 for q in qrels})
    once = _run_with_first_relevant_at(qrels, {q: 1 if q == "q0" else 3 for q in qrels})
    worse = _run_with_first_relevant_at(qrels, {q: 6 for q in qrels})

    on = rerank_decision(qrels, base, {0.0: worse, 0.4: everywhere, 0.8: once})
    assert on["enabled"] and on["blend"] == 0.4 and on["p_value"] < 0.05
    assert on["by_blend"]["0.4"] == pytest.approx(1.0) and on["no_rerank"] == pytest.approx(0.5)
    off = rerank_decision(qrels, base, {0.0: worse, 0.8: once})
    assert not off["enabled"] and off["blend"] == 0.8 and off["p_value"] > 0.05
    assert "not significantly better" in off["why"]
    assert not rerank_decision(qrels, base, {0.0: worse})["enabled"]
    # min_gain < 0 (tests): on whatever it scores
    assert rerank_decision(qrels, base, {0.0: worse}, min_gain=-1.0)["enabled"]


def test_adapt_trains_a_reranker_and_records_it_when_the_gate_lets_it_on(topic_index, settings):
    """The reranker step end to end on a tiny budget: stage 1 on the mined pairs, the held-out
    decision recorded, the model kept inside the index (relative path) and used by searches."""
    from semsearch.collection import Collection
    from semsearch.indexer.manifest import read_manifest

    opts = AdaptOptions(sample=14, dev=8, dense=False, reranker=False, reranker_max_pairs=16,
                        reranker_max_steps=2, min_gain=-1.0)  # on whatever it scores
    Adapter(topic_index, settings, opts, say=lambda m: None).run()
    assert "rerank" not in read_manifest(topic_index).tuned
    # asked again with --reranker: the earlier steps are reused, the reranker step (recorded
    # as "--no-reranker") runs, and so do the steps after it (it was skipped as "done")
    opts.reranker = True
    said: list[str] = []
    state = Adapter(topic_index, settings, opts, say=said.append).run()
    skipped = [m.split("]")[0][1:] for m in said if m.endswith("skipped")]
    assert skipped == ["mine", "baseline", "dense", "fusion"], said
    assert any(m.startswith("[reranker] done before with other options") for m in said), said
    assert state["reranker"]["options"] == {"reranker": True}
    rr = state["reranker"]["result"]
    assert rr["enabled"] and rr["model"] == "models/reranker/stage1" and 0 <= rr["p_value"] <= 1
    assert set(rr["by_blend"]) == {"0.0", "0.2", "0.4", "0.6", "0.8"}
    assert (topic_index / "models" / "reranker" / "stage1" / "training.json").exists()
    tuned = read_manifest(topic_index).tuned
    assert tuned["rerank"] == {"enabled": True, "model": "models/reranker/stage1", "blend": rr["blend"], "depth": 20}
    assert "adapted-hybrid+rerank" in (topic_index / "adapt" / "report" / "pseudo" / "report.md").read_text()
    with Collection.open(topic_index, settings, writable=True) as col:
        hits = col.search("how bees collect pollen in the hive", mode="hybrid", k=3).hits
        assert hits and all("rerank" in h.extra for h in hits)  # the cross-encoder scored them
        assert col.searcher.reranker.name == str(topic_index / "models" / "reranker" / "stage1")
        # defaults that name another reranker: the open collection loads it for its next search
        shutil.copytree(topic_index / "models" / "reranker" / "stage1", topic_index / "models" / "other")
        col.set_tuned({**tuned, "rerank": {**tuned["rerank"], "model": "models/other"}})
        assert all("rerank" in h.extra for h in col.search("bees and pollen", mode="hybrid", k=3).hits)
        assert col.searcher.reranker.name == str(topic_index / "models" / "other")


def test_with_qrels_stage_two_is_trained_as_asked_and_again_when_asked_otherwise(topic_index, settings, tmp_path):
    """With judged queries the reranker step trains stage 2 on them with the asked number of
    hard negatives (the mine step mined 3: the rest are drawn now) and epochs. Asked again
    with other epochs, stage 2 is retrained and stage 1 is reused, also on an index that
    already reranks with the stage-2 model being replaced."""
    from semsearch.indexer.manifest import read_manifest

    queries, qrels = _judged_files(tmp_path)
    opts = AdaptOptions(sample=12, dev=6, dense=False, reranker=True, reranker_max_pairs=16, reranker_max_steps=2,
                        reranker_stage2_negatives=5, reranker_stage2_epochs=1.0, queries=queries, qrels=qrels,
                        judged_dev_fraction=0.25, min_gain=-1.0)  # on whatever it scores
    state = Adapter(topic_index, settings, opts, say=lambda m: None).run()
    rr = state["reranker"]["result"]
    assert rr["enabled"] and rr["model"] == "models/reranker/stage2"
    assert read_manifest(topic_index).tuned["rerank"]["model"] == "models/reranker/stage2"
    stage1, stage2 = (topic_index / "models" / "reranker" / f"stage{n}" / "training.json" for n in (1, 2))
    card = json.loads(stage2.read_text())
    assert (card["hyperparameters"]["negatives"], card["hyperparameters"]["epochs"]) == (5, 1.0)
    judged_train = state["mine"]["result"]["judged_train"]
    assert card["counts"]["train_queries"] == judged_train == 18
    assert card["counts"]["positive_pairs"] == judged_train  # one judged document per query
    assert card["counts"]["negative_pairs"] == 5 * judged_train  # 3 mined before + 2 drawn now, each
    assert state["reranker"]["options"] == {"reranker": True, "stage2_negatives": 5, "stage2_epochs": 1.0}

    stage1_card = stage1.read_text()
    opts.reranker_stage2_epochs, opts.reranker_stage2_negatives = 2.0, 2
    said: list[str] = []
    state = Adapter(topic_index, settings, opts, say=said.append).run()
    assert any(m.startswith("[reranker] done before with other options") for m in said), said
    card = json.loads(stage2.read_text())
    assert (card["hyperparameters"]["negatives"], card["hyperparameters"]["epochs"]) == (2, 2.0)
    assert card["counts"]["negative_pairs"] == 2 * judged_train  # the first 2 of the 3 mined
    assert stage1.read_text() == stage1_card  # not retrained: its card would record a new time
    assert state["reranker"]["options"]["stage2_epochs"] == 2.0


def test_adapt_on_a_path_without_an_index_says_so_and_writes_nothing(tmp_path, settings):
    from semsearch.errors import IndexNotFound

    with pytest.raises(IndexNotFound, match="the directory does not exist"):
        Adapter(tmp_path / "typo", settings, AdaptOptions(), say=lambda m: None)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFound, match="manifest.json is missing"):
        Adapter(tmp_path / "empty", settings, AdaptOptions(), say=lambda m: None)
    assert list((tmp_path / "empty").iterdir()) == []
