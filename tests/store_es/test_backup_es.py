"""`semsearch snapshot` / `semsearch restore` with the Elasticsearch store: the cluster's
snapshot API, with the models `semsearch adapt` published for the index (real server; the
repository is an `fs` one under the `path.repo` that .ci/elasticsearch.sh and
.ci/es-cluster.sh configure)."""

from __future__ import annotations

import json
import subprocess

import pytest

from semsearch.collection import Collection
from semsearch.indexer.es_common import EsConnection
from semsearch.store_es import ElasticsearchCollection, models
from tests.conftest import HashingEncoder, semsearch_cmd, store_settings, subprocess_env

pytestmark = pytest.mark.integration


def _reranker_folder(root):
    f = root / "reranker"
    f.mkdir(parents=True)
    (f / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (f / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    return f


def test_a_store_snapshot_brings_back_the_index_and_the_models_it_names(tmp_path, es_url, es_names, tiny_docs):
    name, models_index, repo = es_names("backup"), es_names("models"), es_names("repo")
    conn = EsConnection(store_settings(es_url, name).store.elasticsearch)
    # an fs repository inside path.repo (a relative location resolves under it)
    conn.call("register repository", lambda c: c.snapshot.create_repository(
        name=repo, repository={"type": "fs", "settings": {"location": repo}}))
    s = store_settings(es_url, name, models_index=models_index, model_cache=tmp_path / "cache")
    with Collection.create(None, s, encoder=HashingEncoder()) as col:
        col.upsert(tiny_docs, wait_for=True)
        ref = col.set_tuned({"rerank": {"enabled": False, "model": str(_reranker_folder(tmp_path))}})["rerank"]["model"]
    env = subprocess_env(SEMSEARCH_STORE__BACKEND="elasticsearch", SEMSEARCH_STORE__ELASTICSEARCH__URL=es_url,
                         SEMSEARCH_STORE__ELASTICSEARCH__INDEX=name,
                         SEMSEARCH_STORE__ELASTICSEARCH__MODELS_INDEX=models_index,
                         SEMSEARCH_STORE__ELASTICSEARCH__ANALYZER="semsearch_en",
                         SEMSEARCH_STORE__ELASTICSEARCH__REPLICAS="0", SEMSEARCH_TEXT_ENCODER__MODEL="unused")
    missing = subprocess.run(semsearch_cmd("snapshot", "--repository", "nope"), env=env, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and "no snapshot repository 'nope'" in missing.stderr, missing.stderr[-2000:]
    r = subprocess.run(semsearch_cmd("snapshot", "--repository", repo, "--name", "first", "--json"), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    snap = json.loads(r.stdout)
    assert snap["indices"] == [f"{name}-v1", models_index] and snap["documents"] == len(tiny_docs)
    assert snap["models"] == [models.digest_of(ref)]
    # the cluster loses the documents and the model (a new cluster, or an operator's mistake)
    with ElasticsearchCollection.open(s, writable=True, encoder=HashingEncoder()) as col:
        col.delete([d.id for d in tiny_docs[:3]], wait_for=True)
    conn.call("delete models", lambda c: c.indices.delete(index=models_index))
    # restoring over an existing index needs --force
    r = subprocess.run(semsearch_cmd("restore", "--repository", repo, "--snapshot", "first"), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--force" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(semsearch_cmd("restore", "--repository", repo, "--snapshot", "first", "--force", "--json"),
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    assert got["index"] == f"{name}-v2" and got["documents"] == len(tiny_docs)
    assert got["models_copied"] == snap["models"]
    with ElasticsearchCollection.open(store_settings(es_url, name, models_index=models_index,
                                                     model_cache=tmp_path / "replica"),
                                      encoder=HashingEncoder()) as col:
        assert col.aliased.targets() == [f"{name}-v2"]  # the alias moved, the old index went
        assert {d.id for d in col.documents()} == {d.id for d in tiny_docs}
        assert col.search("vaccines immune system", mode="lexical", k=1).hits[0].id == "d1"
        assert col.manifest["tuned"]["rerank"]["model"] == ref
        # a replica with an empty cache fetches the restored model whole (its digest checked)
        assert col.settings.rerank.model == str(tmp_path / "replica" / models.digest_of(ref))
    # a restore into another index name (a copy beside the live one): the models are there
    # already, nothing is copied
    other = es_names("copy")
    r = subprocess.run(semsearch_cmd("restore", "--repository", repo, "--snapshot", "first", "--json"),
                       env={**env, "SEMSEARCH_STORE__ELASTICSEARCH__INDEX": other}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["index"] == f"{other}-v1" and json.loads(r.stdout)["models_copied"] == []
    conn.call("delete snapshot", lambda c: c.snapshot.delete(repository=repo, snapshot="first"))
    conn.call("delete repository", lambda c: c.snapshot.delete_repository(name=repo))
    conn.close()
