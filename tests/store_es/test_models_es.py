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


def test_a_published_model_is_fetched_whole_and_checked(tmp_path, es_url, es_names, monkeypatch):
    monkeypatch.setattr(models, "PART_BYTES", 1000)  # several parts per file
    s = store_settings(es_url, es_names("m"))
    index = es_names("models")
    conn = EsConnection(s.store.elasticsearch)
    body = bytes(range(256)) * 13  # 3,328 bytes: 4 parts
    src = _folder(tmp_path, body)
    rec = models.publish(conn, src, base="all-MiniLM-L6-v2", cache=tmp_path / "here", index=index)
    assert rec["ref"] == models.ref_of(models.digest_folder(src)) and models.is_ref(rec["ref"])
    assert rec["files"] == 3 and rec["bytes"] == len(body) + len('{"dim": 4}') + len('{"mean": true}') and rec["base"] == "all-MiniLM-L6-v2"
    assert (tmp_path / "here" / rec["sha256"] / "weights.bin").read_bytes() == body  # no fetch on this machine
    # publishing again sends nothing: the same content has the same name
    assert models.publish(conn, src, cache=tmp_path / "here", index=index)["ref"] == rec["ref"]
    # another machine fetches it whole (hidden files are not part of a model)
    got = models.fetch(conn, rec["ref"], tmp_path / "there", index)
    assert got == tmp_path / "there" / rec["sha256"]
    assert (got / "weights.bin").read_bytes() == body and (got / "1_Pooling" / "config.json").exists()
    assert not (got / ".hidden").exists() and models.digest_folder(got) == rec["sha256"]
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
    assert models.published(conn, ref[len(models.PREFIX):], index) is None
    with pytest.raises(IndexIncompatible, match="not in the cluster"):
        models.fetch(conn, ref, tmp_path / "other", index)
    assert models.publish(conn, src, cache=tmp_path / "c", index=index)["ref"] == ref
    assert (models.fetch(conn, ref, tmp_path / "other", index) / "weights.bin").read_bytes() == b"x" * 2500
    conn.close()
