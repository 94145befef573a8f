"""Model folders published in Elasticsearch and fetched by replicas (store_es.models)."""

from __future__ import annotations

import pytest

from semsearch.errors import BadInput, IndexIncompatible
from semsearch.indexer.es_common import EsConnection
from semsearch.store_es import models
from tests.conftest import store_settings

pytestmark = pytest.mark.integration


def _folder(root, body: bytes):
    f = root / "model"
    (f / "1_Pooling").mkdir(parents=True)
    (f / "config.json").write_text('{"dim": 4}')
    (f / "weights.bin").write_bytes(body)
    (f / "1_Pooling" / "config.json").write_text('{"mean": true}')
    (f / ".hidden").write_text("not part of the model")
    return f


def _onnx_exports(f):
    (f / "onnx").mkdir()
    (f / "onnx" / "model.onnx").write_bytes(b"fp32" * 100)
    (f / "onnx" / "model_int8.onnx").write_bytes(b"int8" * 25)


def test_a_published_model_is_fetched_whole_and_checked(tmp_path, es_url, es_names, monkeypatch):
    monkeypatch.setattr(models, "PART_BYTES", 1000)  # several parts per file
    s = store_settings(es_url, es_names("m"))
    index = es_names("models")
    conn = EsConnection(s.store.elasticsearch)
    body = bytes(range(256)) * 13  # 3,328 bytes: 4 parts
    src = _folder(tmp_path, body)
    _onnx_exports(src)  # a reranker's: the int8 export travels, the fp32 one is made again where asked
    rec = models.publish(conn, src, base="all-MiniLM-L6-v2", cache=tmp_path / "here", index=index)
    assert rec["ref"] == models.ref_of(models.digest_folder(src)) and models.is_ref(rec["ref"])
    assert rec["files"] == 4 and rec["base"] == "all-MiniLM-L6-v2"
    assert rec["bytes"] == len(body) + len('{"dim": 4}') + len('{"mean": true}') + 100
    assert (tmp_path / "here" / rec["sha256"] / "weights.bin").read_bytes() == body  # no fetch on this machine
    # publishing again sends nothing: the same content has the same name
    assert models.publish(conn, src, cache=tmp_path / "here", index=index)["ref"] == rec["ref"]
    # another machine fetches it whole (hidden files are not part of a model)
    got = models.fetch(conn, rec["ref"], tmp_path / "there", index)
    assert got == tmp_path / "there" / rec["sha256"]
    assert (got / "weights.bin").read_bytes() == body and (got / "1_Pooling" / "config.json").exists()
    assert not (got / ".hidden").exists() and models.digest_folder(got) == rec["sha256"]
    assert (got / "onnx" / "model_int8.onnx").exists() and not (got / "onnx" / "model.onnx").exists()
    assert [p.name for p in (tmp_path / "there").iterdir()] == [rec["sha256"]]  # no temporary folder left
    # a part changed in the cluster: refused, and nothing is left in the cache
    conn.call("tamper", lambda c: c.update(index=index, id=f"{rec['sha256']}/weights.bin/1",
                                           doc={"data": "AAAA"}, refresh=True))
    with pytest.raises(IndexIncompatible, match="does not match its digest"):
        models.fetch(conn, rec["ref"], tmp_path / "elsewhere", index)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    with pytest.raises(BadInput, match="not a published model"):
        models.fetch(conn, "all-MiniLM-L6-v2", tmp_path / "x", index)
    conn.close()


def test_a_publish_that_stopped_half_way_is_not_read_and_is_completed(tmp_path, es_url, es_names, monkeypatch):
    monkeypatch.setattr(models, "PART_BYTES", 1000)
    s = store_settings(es_url, es_names("m"))
    index = es_names("models")
    conn = EsConnection(s.store.elasticsearch)
    src = _folder(tmp_path, b"x" * 2500)
    ref = models.ref_of(models.digest_folder(src))
    calls = {"n": 0}
    real = conn.call

    def dies_at_the_listing(what, fn):
        if "listing" in what:
            raise KeyboardInterrupt  # killed before the listing was written
        calls["n"] += 1
        return real(what, fn)

    monkeypatch.setattr(conn, "call", dies_at_the_listing)
    with pytest.raises(KeyboardInterrupt):
        models.publish(conn, src, cache=tmp_path / "c", index=index)
    monkeypatch.setattr(conn, "call", real)
    assert models.published(conn, models.digest_of(ref), index) is None
    with pytest.raises(IndexIncompatible, match="not in the cluster"):
        models.fetch(conn, ref, tmp_path / "other", index)
    assert models.publish(conn, src, cache=tmp_path / "c", index=index)["ref"] == ref
    assert (models.fetch(conn, ref, tmp_path / "other", index) / "weights.bin").read_bytes() == b"x" * 2500
    conn.close()


def test_prune_deletes_the_models_no_manifest_names_once_past_the_grace_period(tmp_path, es_url, es_names, tiny_docs):
    import json
    import subprocess

    from semsearch.collection import Collection
    from tests.conftest import HashingEncoder, semsearch_cmd, subprocess_env

    name, index = es_names("pruned"), es_names("models")
    s = store_settings(es_url, name, models_index=index, model_cache=tmp_path / "cache")
    conn = EsConnection(s.store.elasticsearch)
    used = _folder(tmp_path / "a", b"the reranker in use")
    old = models.publish(conn, _folder(tmp_path / "b", b"a reranker replaced since"), cache=tmp_path / "cache",
                         index=index)
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        col.upsert(tiny_docs[:2], wait_for=True)
        # a reranker is recorded by the name it is published under; one not published is refused
        with pytest.raises(BadInput, match="is not published"):
            col.set_tuned({"rerank": {"enabled": False, "model": models.ref_of("0" * 64)}})
        ref = col.set_tuned({"rerank": {"enabled": False, "model": str(used)}})["rerank"]["model"]
        physical = col.aliased.targets()[0]
    digest = models.digest_of(ref)
    assert models.in_use(conn)[digest] == [physical] and old["sha256"] not in models.in_use(conn)
    # within the grace period nothing goes (an adapt may not have switched its index yet)
    assert models.prune(conn, index, older_than=3600) == []
    assert models.prune_cache(tmp_path / "cache", models.in_use(conn), older_than=3600) == []
    assert [m["model"] for m in models.listings(conn, index)] == [old["sha256"], digest]
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name, SEMSEARCH_STORE__ELASTICSEARCH__MODELS_INDEX=index)
    r = subprocess.run(semsearch_cmd("models"), env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{ref}  0 MB  published 20" in r.stdout and f"used by: {physical}" in r.stdout
    assert f"{old['ref']}  0 MB" in r.stdout and "used by: unused" in r.stdout and "2 model(s)" in r.stdout
    # this machine's copies: the publisher's of both, and a fetch that died long ago
    cache = tmp_path / "cache"
    assert {p.name for p in cache.iterdir()} == {old["sha256"], digest}
    (cache / f".{digest[:12]}-dead").mkdir()
    (cache / "notes").mkdir()  # not semsearch's: left alone
    r = subprocess.run(semsearch_cmd("models", "--prune", "--older-than", "0", "--json"), env={
        **env, "SEMSEARCH_STORE__ELASTICSEARCH__MODEL_CACHE": str(cache)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    listed = json.loads(r.stdout)["models"]
    assert [(m["ref"], m["pruned"]) for m in listed] == [(old["ref"], True), (ref, False)]
    assert sorted(json.loads(r.stdout)["cache_removed"]) == [str(cache / f".{digest[:12]}-dead"), str(cache / old["sha256"])]
    assert {p.name for p in cache.iterdir()} == {digest, "notes"}
    assert [m["model"] for m in models.listings(conn, index)] == [digest]
    parts = conn.call("count", lambda c: c.count(index=index, query={"term": {"model": old["sha256"]}}).body)
    assert parts["count"] == 0  # the listing and every part
    assert models.fetch(conn, ref, tmp_path / "elsewhere", index).is_dir()  # the one in use is whole
    with pytest.raises(IndexIncompatible, match="not in the cluster"):
        models.fetch(conn, old["ref"], tmp_path / "elsewhere", index)
    conn.close()
    local = subprocess.run(semsearch_cmd("models"), env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert local.returncode == 2 and "SEMSEARCH_STORE__BACKEND=elasticsearch" in local.stderr
