"""`semsearch adapt` with the Elasticsearch store: fusion chosen on the cluster's documents,
recorded in the store index's manifest, and searched with by every replica."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from semsearch.collection import Collection
from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.store_es import ElasticsearchCollection
from tests.adapt.conftest import RRF7_LEXICAL_ONLY, assert_searches_use_rrf7_lexical_only
from tests.conftest import HashingEncoder, semsearch_cmd, store_settings, subprocess_env

pytestmark = pytest.mark.integration


def test_every_replica_searches_with_the_recorded_fusion_defaults(es_url, es_names, tiny_docs):
    s = store_settings(es_url, es_names("tuned"), manifest_refresh=0.5)
    q = "bees pollinate crops"
    with Collection.create(None, s, encoder=HashingEncoder()) as col, \
            ElasticsearchCollection.open(s, encoder=HashingEncoder()) as replica:
        col.upsert(tiny_docs, wait_for=True)
        assert replica.settings.fusion.method == s.fusion.method  # nothing recorded yet
        before = replica.search(q, mode="hybrid", k=5)
        assert before.hits[0].score != pytest.approx(1.0 / 8)
        col.set_tuned({"fusion": RRF7_LEXICAL_ONLY, "by": "semsearch adapt", "at": time.time()})
        time.sleep(0.7)  # the replica reads the manifest again after manifest_refresh seconds
        assert replica.settings.fusion.method == "rrf" and replica.settings.fusion.rrf_k == 7
        assert_searches_use_rrf7_lexical_only(replica, q)  # unless a request says otherwise
        assert replica.stats()["tuned"]["fusion"] == RRF7_LEXICAL_ONLY
    # so does a setting the user set explicitly
    explicit = store_settings(es_url, s.store.elasticsearch.index)
    explicit.fusion.method = "convex"
    with ElasticsearchCollection.open(explicit, encoder=HashingEncoder()) as other:
        assert other.settings.fusion.method == "convex" and other.settings.fusion.rrf_k == 7
        # only fusion can be recorded in the cluster: a model folder would be on one machine
        with pytest.raises(BadInput, match="read-only"):
            other.set_tuned({"fusion": RRF7_LEXICAL_ONLY})
    with ElasticsearchCollection.open(s, writable=True, encoder=HashingEncoder()) as w:
        with pytest.raises(BadInput, match="only fusion and reranking defaults"):
            w.set_tuned({"fusion": RRF7_LEXICAL_ONLY, "dense_encoder": "models/dense-adapted"})
        # a reranker must be a model folder that can be published for every replica
        with pytest.raises(BadInput, match="not a saved model folder"):
            w.set_tuned({"rerank": {"enabled": True, "model": "models/reranker/stage1"}})
        assert "rerank" not in w.manifest["tuned"]


def test_passage_vectors_are_read_back_per_document(es_url, es_names):
    s = store_settings(es_url, es_names("pvec"))
    s.text_encoder.passages.window = 16
    s.text_encoder.passages.overlap = 4
    long = Document(id="long", title="A long one", text=" ".join(f"word{i}" for i in range(60)))
    short = Document(id="short", title="Short", text="a few words")
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        col.upsert([long, short], wait_for=True)
        assert col.passage_plan() is not None
        got = col.passage_vectors(["long", "short", "absent"])
        assert got[0].shape[0] > 1 and got[1].shape[0] == 1 and got[2] is None
        assert got[0].shape[1] == col.vectors([], "dense").shape[1] == 64
        assert got[0][0] == pytest.approx(col.vectors(["long"])[0])  # the first passage's


def _topic_env(es_url: str, name: str) -> dict:
    return subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                          SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name,
                          SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                          SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0", SEMSEARCH_TEXT_ENCODER__DEVICE="cpu")


def test_adapt_command_adapts_the_store_index(tmp_path, es_url, es_names):
    from tests.adapt.conftest import topic_docs

    name = es_names("adapt")
    env = _topic_env(es_url, name)
    src = tmp_path / "topics.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in topic_docs()), encoding="utf-8")
    r = subprocess.run(semsearch_cmd("index", "--input", str(src)), env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(semsearch_cmd("adapt", "--sample", "14", "--dev", "8"), env=env, capture_output=True,
                       text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "records its choices in the store index" in r.stderr
    assert f"adapted Elasticsearch store index {name!r}" in r.stdout
    work = tmp_path / f"adapt-{name}"
    state = json.loads((work / "state.json").read_text())
    # the encoder was fine-tuned on the cluster's documents and judged on the held-out share
    assert "[dense] step 1/1: loss" in r.stdout and state["dense"]["result"]["on"].startswith("8 held-out")
    assert f"dense {'fine-tuned' if state['dense']['result']['kept'] else 'base'}," in r.stdout
    assert state["baseline"]["result"]["informative"]["hybrid"] <= state["baseline"]["result"]["trivial"]["hybrid"]
    assert (work / "report" / "adapt.md").exists() and (work / "report" / "pseudo" / "results.json").exists()
    s = store_settings(es_url, name)
    with ElasticsearchCollection.open(s) as col:
        tuned = col.manifest["tuned"]
    assert tuned["fusion"] == state["fusion"]["result"]["chosen"] and tuned["by"] == "semsearch adapt"
    assert "dense_encoder" not in tuned and "rerank" not in tuned
    assert (work / "report" / "adapt.md").read_text().startswith(f"# semsearch adapt: Elasticsearch store index {name!r}")
    info = subprocess.run(semsearch_cmd("info"), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert info.returncode == 0, info.stderr[-3000:]
    assert "search defaults" in info.stdout and "by semsearch adapt" in info.stdout
    assert "documents" in info.stdout and " 24 " in info.stdout
    # resumable: a second run skips every step
    again = subprocess.run(semsearch_cmd("adapt", "--sample", "14", "--dev", "8"), env=env, capture_output=True,
                           text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("skipped") == 7, again.stdout[-2000:]


def test_adapt_command_arguments_by_store(tmp_path, es_url, es_names):
    missing = es_names("missing")
    r = subprocess.run(semsearch_cmd("adapt"), env=_topic_env(es_url, missing), capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (tmp_path / f"adapt-{missing}").exists()
    local = subprocess_env()
    r = subprocess.run(semsearch_cmd("adapt"), env=local, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "--index is required" in r.stderr
    r = subprocess.run(semsearch_cmd("adapt", "--index", str(tmp_path), "--work", str(tmp_path / "w")), env=local,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "--work is for the Elasticsearch store" in r.stderr


def test_reindex_rebuilds_the_store_with_a_new_analyzer_and_keeps_its_search_defaults(
        tmp_path, es_url, es_names, tiny_docs, caplog):
    import logging

    from semsearch.errors import IndexIncompatible

    name = es_names("reanalyse")
    old = store_settings(es_url, name, analyzer="standard")
    with Collection.create(None, old, encoder=HashingEncoder()) as col:
        col.upsert(tiny_docs, wait_for=True)
        assert "d11" not in [h.id for h in col.search("flower", mode="lexical", k=5).hits]  # no stemming
        col.set_tuned({"fusion": RRF7_LEXICAL_ONLY, "by": "semsearch adapt", "at": time.time()})
    new = store_settings(es_url, name)  # the stemming analyzer
    with pytest.raises(IndexIncompatible, match="semsearch reindex"):
        ElasticsearchCollection.open(new)
    # a replica still configured with the old analyzer, serving while the index is rebuilt
    stale = ElasticsearchCollection.open(store_settings(es_url, name, analyzer="standard", manifest_refresh=0),
                                         encoder=HashingEncoder())
    env = {**_topic_env(es_url, name), "SEMSEARCH_TEXT_ENCODER__MODEL": "unused"}
    r = subprocess.run(semsearch_cmd("reindex", "--factory", "HNSW32"), env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "VECTOR_INDEX" in r.stderr
    r = subprocess.run(semsearch_cmd("reindex"), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"rebuilt Elasticsearch index {name!r}" in r.stderr and f"into {name}-v2: 12 documents" in r.stderr
    with ElasticsearchCollection.open(new, encoder=HashingEncoder()) as col:
        assert col.manifest["analyzer"] == "semsearch_en"
        assert col.manifest["tuned"]["fusion"] == RRF7_LEXICAL_ONLY  # the rebuild keeps what adapt chose
        assert "d11" in [h.id for h in col.search("flower", mode="lexical", k=5).hits]
        assert len(col.passage_vectors(["d11"])[0]) == 1  # vectors copied, not re-encoded
    # the stale replica goes on searching (the new index, through the alias) and says once why
    # it keeps the manifest it read before
    with caplog.at_level(logging.WARNING, logger="semsearch.store_es.collection"):
        for _ in range(3):
            assert stale.search("flower", mode="lexical", k=5).hits[0].id == "d11"
    stale.close()
    said = [r.getMessage() for r in caplog.records if "keeping the manifest" in r.getMessage()]
    assert len(said) == 1 and "semsearch reindex" in said[0]
    # delete works on the store without --index
    r = subprocess.run(semsearch_cmd("delete", "d11", "nope"), env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "deleted 1 of 2 ids" in r.stderr, r.stderr[-3000:]


def test_adapt_fine_tunes_the_store_encoder_and_every_replica_and_writer_follows(
        tmp_path, es_url, es_names, monkeypatch):
    """A kept fine-tuned encoder is published in the cluster, the documents are re-encoded with
    it into a new index behind the alias (writes made meanwhile included), and replicas
    started before or after fetch it and encode queries and documents with it."""
    import numpy as np

    from semsearch.adapt.dense import DenseTrainConfig
    from semsearch.adapt.runner import Adapter, AdaptOptions
    from semsearch.store_es import models
    from semsearch.store_es import rebuild as rebuild_mod
    from tests.adapt.conftest import topic_docs

    name, models_index = es_names("dense"), es_names("models")

    def settings(cache: str, **es: object):
        s = store_settings(es_url, name, models_index=models_index, model_cache=tmp_path / cache, **es)
        s.text_encoder.query_backend = "torch"
        return s

    docs = {d["_id"]: Document(id=d["_id"], title=d["title"], text=d["text"]) for d in topic_docs()}
    s = settings("adapter")
    with Collection.create(None, s) as col:
        col.upsert(list(docs.values()), wait_for=True)
        base_name = col.manifest["dense"]["encoder"]
        before = dict(zip(docs, col.passage_vectors(list(docs))))
    q = "how bees collect pollen in the hive"
    replica = ElasticsearchCollection.open(settings("replica", manifest_refresh=3600))
    stale = ElasticsearchCollection.open(settings("stale", manifest_refresh=3600), writable=True)
    assert replica.search(q, mode="dense", k=3).hits and stale.search(q, mode="dense", k=1).hits
    real_block = rebuild_mod.block_writes

    def write_then_block(c, index):  # noqa: ANN001 - a write after the copy: only the catch-up carries it
        stale.upsert([Document(id="late", title=docs["t03"].title, text=docs["t03"].text)], wait_for=True)
        real_block(c, index)

    monkeypatch.setattr(rebuild_mod, "block_writes", write_then_block)
    opts = AdaptOptions(sample=16, dev=6, reranker=False, min_gain=-1.0,  # keep it whatever it scores
                        dense_config=DenseTrainConfig(batch_size=4, max_steps=2, max_seq_length=64))
    state = Adapter(tmp_path / "work", s, opts).run()
    assert state["dense"]["result"]["kept"]
    info = state["apply"]["result"]["reencode"]
    assert info["index"] == f"{name}-v2" and info["documents"] == 25
    # 24 from the dense step's vectors, the late one encoded by the catch-up
    assert info["reencoded"] == {"from_vectors": 24, "encoded": 1} and info["caught_up"]["new"] == 1
    said = (tmp_path / "work" / "report" / "adapt.md").read_text()
    assert f"Text encoder: `{info['encoder']}`" in said and f"rebuilt into `{name}-v2`" in said
    with ElasticsearchCollection.open(settings("fresh")) as fresh:  # started now, with an empty cache
        dense = fresh.manifest["dense"]
        assert models.is_ref(dense["encoder"]) and dense["model"]["base"] == base_name
        assert fresh.stats()["models"]["text_encoder"] == dense["encoder"]  # `semsearch info` names it
        assert fresh.manifest["tuned"]["fusion"] == state["fusion"]["result"]["chosen"]
        folder = tmp_path / "fresh" / dense["model"]["sha256"]
        assert fresh.encoder.name == str(folder) and models.digest_folder(folder) == dense["model"]["sha256"]
        assert fresh.search(q, mode="dense", k=3).hits[0].id == "t02"
        after = dict(zip([*docs, "late"], fresh.passage_vectors([*docs, "late"])))
        assert all(after[i].shape == before[i].shape for i in docs)
        assert not np.allclose(after["t02"], before["t02"], atol=1e-3)  # re-encoded
        assert after["late"] == pytest.approx(after["t03"], abs=1e-5)  # the catch-up used the new encoder
        # a replica opened before adapt (that would not read the manifest again for an hour)
        # sees its hits come from another physical index: it reads the manifest, switches its
        # query encoder and searches again
        assert replica.search(q, mode="dense", k=3).hits[0].id == "t02"
        assert replica.encoder.name == str(tmp_path / "replica" / dense["model"]["sha256"])
        # a writer that still holds the old manifest encodes with the base model; the write lands
        # in the new index, so it finds out after the acknowledgement and writes it again
        assert stale.encoder.name != str(tmp_path / "stale" / dense["model"]["sha256"])
        stale.upsert([Document(id="t02-copy", title=docs["t02"].title, text=docs["t02"].text)], wait_for=True)
        assert fresh.passage_vectors(["t02-copy"])[0] == pytest.approx(after["t02"], abs=1e-5)
        assert stale.encoder.name == str(tmp_path / "stale" / dense["model"]["sha256"])
        # adapt run again with the same encoder (to add a reranker): the defaults only, no rebuild
        with ElasticsearchCollection.open(s, writable=True) as w:
            again = w.reencode({}, tmp_path / "work" / "models" / "dense-adapted", tuned={"fusion": RRF7_LEXICAL_ONLY})
            assert again == {"encoder": dense["encoder"], "unchanged": True, "tuned": {"fusion": RRF7_LEXICAL_ONLY}}
            assert w.aliased.targets() == [f"{name}-v2"] and w.manifest["tuned"] == {"fusion": RRF7_LEXICAL_ONLY}
    replica.close()
    stale.close()
    with pytest.raises(BadInput, match="already adapted"):
        Adapter(tmp_path / "again", s, opts).run()


def test_adapt_trains_a_store_reranker_that_every_replica_fetches_and_reranks_with(tmp_path, es_url, es_names):
    """``adapt --reranker`` on the store: stage 1 trained on the cluster's documents, the model
    published in the cluster and named in the manifest's search defaults; a replica started
    before (its reranker loaded) and one started after (empty model cache) both rerank with
    it; a newer reranker replaces the loaded one; a reranker the user sets wins."""
    import shutil

    from semsearch.adapt.runner import Adapter, AdaptOptions
    from semsearch.store_es import models
    from tests.adapt.conftest import topic_docs

    name, models_index = es_names("rerank"), es_names("models")

    def settings(cache: str, **es: object):
        s = store_settings(es_url, name, models_index=models_index, model_cache=tmp_path / cache, **es)
        s.rerank.backend = "torch"  # the folder as trained (no ONNX export beside it)
        return s

    s = settings("adapter")
    with Collection.create(None, s) as col:
        col.upsert([Document(id=d["_id"], title=d["title"], text=d["text"]) for d in topic_docs()], wait_for=True)
    q = "how bees collect pollen in the hive"
    before = ElasticsearchCollection.open(settings("before", manifest_refresh=0))
    assert not before.search(q, mode="hybrid", k=3).hits[0].extra.get("rerank")  # no reranker yet
    opts = AdaptOptions(sample=14, dev=8, dense=False, reranker=True, reranker_max_pairs=16,
                        reranker_max_steps=2, min_gain=-1.0)  # on whatever it scores
    state = Adapter(tmp_path / "work", s, opts, say=lambda m: None).run()
    rr = state["reranker"]["result"]
    assert rr["enabled"] and rr["model"] == "models/reranker/stage1"
    trained = tmp_path / "work" / rr["model"]
    digest = models.digest_folder(trained)
    tuned = state["apply"]["result"]["tuned"]
    assert tuned["rerank"] == {"enabled": True, "model": models.ref_of(digest), "blend": rr["blend"], "depth": 20}
    assert f'"model": "{models.ref_of(digest)}"' in (tmp_path / "work" / "report" / "adapt.md").read_text()
    with ElasticsearchCollection.open(settings("fresh")) as fresh:  # started now, with an empty cache
        assert fresh.manifest["tuned"]["rerank"] == tuned["rerank"]
        folder = tmp_path / "fresh" / digest
        assert fresh.settings.rerank.model == str(folder) and models.digest_folder(folder) == digest
        hits = fresh.search(q, mode="hybrid", k=3).hits
        assert hits and all("rerank" in h.extra for h in hits)  # the cross-encoder scored them
        assert fresh.reranker.name == str(folder)
    # the replica started before adapt reads the manifest again and reranks too
    hits = before.search(q, mode="hybrid", k=3).hits
    assert all("rerank" in h.extra for h in hits) and before.reranker.name == str(tmp_path / "before" / digest)
    # a newer reranker (another folder: another digest) replaces the loaded one
    newer = tmp_path / "newer"
    shutil.copytree(trained, newer)
    (newer / "README.md").write_text("retrained")
    with ElasticsearchCollection.open(s, writable=True) as w:
        recorded = w.set_tuned({**tuned, "rerank": {**tuned["rerank"], "model": str(newer)}})
    assert recorded["rerank"]["model"] == models.ref_of(models.digest_folder(newer)) != tuned["rerank"]["model"]
    assert before.search(q, mode="hybrid", k=3).hits[0].extra.get("rerank")
    assert before.reranker.name == str(tmp_path / "before" / models.digest_folder(newer))
    before.close()
    # a reranker the user sets explicitly wins over the recorded one (and nothing is fetched)
    explicit = settings("explicit")
    explicit.rerank.model = str(trained)
    with ElasticsearchCollection.open(explicit) as mine:
        assert mine.settings.rerank.model == str(trained) and mine.settings.rerank.enabled
        assert not (tmp_path / "explicit").exists()
