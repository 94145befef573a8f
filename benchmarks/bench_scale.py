"""Scale (issue #13): bulk ingest, write-to-searchable, hybrid latency idle and under a writer,
filtered hybrid, peak memory and disk, for semsearch's segment core side by side with two
embedded peers measured in the same run: LanceDB (full-text + vector index) and Milvus Lite
(BM25 function + HNSW).

    python benchmarks/bench_scale.py --docs 100000 [--queries 100] [--writes 50]
        [--engines semsearch,lancedb,milvus] [--writer-rate 50]

Data. Texts are ``common.synth_corpus`` (SciFact abstracts with a third of their words
swapped), streamed, plus a ``bucket`` metadata field ``i % 100`` for the filters (1% =
``bucket == 7``, 50% = ``bucket < 50``). Document vectors are NOT encoded per document (that
takes hours on 2 cores): they are the real all-MiniLM-L6-v2 vectors of the 5,183 SciFact
abstracts, tiled, plus Gaussian noise (sigma 0.02 per coordinate), re-normalised, exactly as
``bench_hybrid.py`` makes them, cached under ``--cache`` (default /tmp/semsearch-bench-scale).
Ingest figures therefore exclude encoding. Query vectors ARE encoded inside every timed
search: semsearch's ``Collection`` encodes the query itself; for the peers the same query
encoder object (``make_text_encoder(..., for_queries=True)``) is called by hand.

Each engine runs in its own subprocess (so peak RSS is per engine); the parent prints one
table and saves bench-results/scale_<docs>.json.

semsearch: bulk ingest through ``Index.write`` (precomputed vectors) + ``sync()``, then any
merges the tiered policy wants are run to completion (timed apart); the dense channel is
FAISS ``HNSW32`` (efSearch 128). Then a ``Collection`` with the default 1 s refresh
interval and background merges; its encoder is the real query encoder, except that texts
written by this benchmark get their precomputed vectors (so writes exclude encoding too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SEMSEARCH_NO_PROGRESS", "1")
os.environ.setdefault("LANCE_LOG", "error")  # lance logs a deprecation warning per hybrid query

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dir_size_mb, load_jsonl, load_queries, percentiles, require_scifact, save  # noqa: E402

DIM = 384
CHUNK = 5000
ENGINES = ("semsearch", "lancedb", "milvus")
SKIP_MERGES = False  # --ingest-only / --no-merges: the policy's merges after a bulk load are not run
NO_BACKGROUND_MERGES = False  # --no-merges: the Collection runs no background merges either
MAX_RSS_MB = float("inf")  # --max-rss-gb: a peer's ingest stops there (this machine has 24 GiB)


class MemoryCap(Exception):
    """An engine's resident memory passed --max-rss-gb during ingest."""


def check_memory(done: int) -> None:
    rss = rss_mb()
    if rss > MAX_RSS_MB:
        raise MemoryCap(f"resident memory {rss:.0f} MB passed the cap of {MAX_RSS_MB:.0f} MB "
                        f"after {done} documents")


# -- data -----------------------------------------------------------------------------------
def iter_corpus(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``common.synth_corpus(n, seed)`` streamed (the same documents, in the same order),
    plus ``bucket = i % 100``."""
    base = load_jsonl(require_scifact() / "corpus.jsonl")
    vocab = [w for d in base for w in d["text"].split()]
    rng = random.Random(seed)
    for i in range(n):
        d = base[i % len(base)]
        if i < len(base):
            yield {"_id": d["_id"], "title": d["title"], "text": d["text"], "bucket": i % 100}
            continue
        words = d["text"].split()
        for j in range(len(words)):
            if rng.random() < 0.33:
                words[j] = rng.choice(vocab)
        yield {"_id": f"{d['_id']}-v{i // len(base)}", "title": d["title"], "text": " ".join(words),
               "bucket": i % 100}


def chunks(n: int, size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    buf: list[dict[str, Any]] = []
    for d in iter_corpus(n):
        buf.append(d)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def base_vectors(cache: Path, store: Path | None = None) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors of the SciFact abstracts ("{title} {text}"), as bench_hybrid:
    encoded once, or read from the document store of a semsearch index of SciFact built with
    that model (``--base-from-index``: no re-encoding)."""
    f = cache / "scifact-minilm.npy"
    if f.exists():
        return np.load(f)
    base = load_jsonl(require_scifact() / "corpus.jsonl")
    if store is not None:
        import sqlite3

        m = json.loads((store / "manifest.json").read_text())
        enc_name = m["channels"]["dense"]["encoder"]
        if enc_name != "sentence-transformers/all-MiniLM-L6-v2":
            raise SystemExit(f"{store} was built with {enc_name}, not all-MiniLM-L6-v2")
        con = sqlite3.connect(f"file:{store / 'docs.sqlite'}?mode=ro", uri=True)
        rows = dict(con.execute("SELECT id, vec FROM vectors WHERE channel = 'dense'").fetchall())
        v = np.stack([np.frombuffer(rows[d["_id"]], dtype=np.float32) for d in base])
        np.save(f, v)
        return v
    from semsearch.config import Settings
    from semsearch.encoders.sbert import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder(Settings().text_encoder)
    print(f"encoding {len(base)} SciFact abstracts once (cached in {f}) ...", flush=True)
    v = enc.encode([f"{d['title']} {d['text']}" for d in base])
    np.save(f, v)
    return v


def doc_vectors(n: int, cache: Path, store: Path | None = None) -> Path:
    """Cached (n, 384) float32: SciFact vectors tiled + N(0, 0.02) noise, re-normalised."""
    f = cache / f"vectors-{n}.npy"
    if f.exists():
        return f
    base = base_vectors(cache, store)
    out = np.lib.format.open_memmap(cache / f"vectors-{n}.tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    rng = np.random.default_rng(0)
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        rows = base[np.arange(s, e) % len(base)] + rng.normal(scale=0.02, size=(e - s, DIM)).astype(np.float32)
        out[s:e] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    out.flush()
    del out
    os.replace(cache / f"vectors-{n}.tmp.npy", f)
    return f


def extra_doc(i: int, vecs: np.ndarray, tag: str) -> tuple[dict[str, Any], np.ndarray]:
    """A new document for the write tests: a corpus abstract with a unique all-letter token
    in its title (found by a lexical search) and a fresh noisy copy of a real vector."""
    src = vecs.shape[0] // 2 + i
    token = "zq" + tag + "".join("abcdefghij"[int(c)] for c in str(i)) + "probe"
    v = np.asarray(vecs[src % vecs.shape[0]], np.float32) + np.random.default_rng(i).normal(scale=0.02, size=DIM).astype(np.float32)
    v /= np.linalg.norm(v)
    return {"_id": f"{tag}-{i}", "title": f"{token} new study", "text": EXTRA_TEXTS[i % len(EXTRA_TEXTS)],
            "bucket": i % 100, "token": token}, v


EXTRA_TEXTS: list[str] = []


# -- measurement helpers -------------------------------------------------------------------
def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_queries(fn, queries: list[str], max_s: float = float("inf")) -> tuple[list[float], list[tuple[float, float]]]:
    lat, spans = [], []
    start = time.perf_counter()
    for q in queries:
        if time.perf_counter() - start > max_s:
            break
        t = time.perf_counter()
        fn(q)
        e = time.perf_counter()
        lat.append(e - t)
        spans.append((t, e))
    return lat, spans


def pct(xs: list[float]) -> dict[str, float]:
    p = percentiles(xs)
    return {**p, "max_ms": round(max(xs) * 1000, 3), "n": len(xs)} if xs else {}


class Writer(threading.Thread):
    """Adds ``rate`` documents per second, one per call, on a fixed schedule."""

    def __init__(self, add, rate: float, vecs: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.add, self.rate, self.vecs = add, rate, vecs
        self.stop = threading.Event()
        self.done = 0
        self.lat: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        t0 = time.perf_counter()
        i = 0
        try:
            while not self.stop.is_set():
                due = t0 + i / self.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                doc, v = extra_doc(100_000 + i, self.vecs, "live")
                t = time.perf_counter()
                self.add(doc, v)
                self.lat.append(time.perf_counter() - t)
                i += 1
                self.done = i
        except BaseException as e:  # noqa: BLE001 - reported in the results
            self.error = e
        self.seconds = time.perf_counter() - t0


# -- engines --------------------------------------------------------------------------------
class Engine:
    name = ""

    def __init__(self, path: Path, n: int, vecs: np.ndarray, qenc) -> None:
        self.path, self.n, self.vecs, self.qenc = path, n, vecs, qenc


class SemsearchEngine(Engine):
    name = "semsearch"

    def settings(self):
        from semsearch.config import Settings

        s = Settings()
        s.no_progress = True
        s.vector.faiss.factory = "HNSW32"
        s.indexing.background_merges = not NO_BACKGROUND_MERGES
        return s

    def ingest(self) -> dict[str, Any]:
        from semsearch.documents import Document
        from semsearch.indexer.index import Index

        s = self.settings()
        took = 0.0
        with Index.create(self.path, s) as idx:
            idx.ensure_channel("dense", dim=DIM, encoder=self.qenc.name)
            start = 0
            for chunk in chunks(self.n):
                docs = [Document(id=d["_id"], title=d["title"], text=d["text"], metadata={"bucket": d["bucket"]})
                        for d in chunk]
                v = np.ascontiguousarray(self.vecs[start : start + len(chunk)])
                t = time.perf_counter()
                idx.write(docs, {"dense": v})
                took += time.perf_counter() - t
                start += len(chunk)
            write_s = took
            t = time.perf_counter()
            info = idx.sync()
            sync_s = time.perf_counter() - t
            took += sync_s
            t = time.perf_counter()
            merges = []
            while not SKIP_MERGES and (m := idx.maybe_merge()) is not None:
                merges.append({k: m[k] for k in ("docs", "seconds")})
            merge_s = time.perf_counter() - t
            segs = [r.n_docs for r in idx.manifest.segments]
        return {"seconds": took, "write_s": write_s, "refresh_s": sync_s, "segments_after_refresh": info["segments"],
                "merge_to_policy_s": merge_s, "merges": merges, "segments": segs}

    def open(self) -> None:
        from semsearch.collection import Collection

        self.lookup: dict[str, np.ndarray] = {}
        self.template = self.settings().text_encoder.doc_template
        outer = self

        class Enc:  # the real query encoder; texts this benchmark writes have their vectors
            name, dim = self.qenc.name, self.qenc.dim

            def encode(self, texts, **kw):
                if texts and all(t in outer.lookup for t in texts):
                    return np.stack([outer.lookup[t] for t in texts])
                return outer.qenc.encode(texts, **kw)

        self.events: list[tuple[float, str]] = []

        class Grab(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                msg = record.getMessage()
                if record.levelno >= logging.ERROR:
                    outer.events.append((time.perf_counter(), "ERROR " + msg))
                elif msg.startswith(("merged", "refreshed")):
                    outer.events.append((time.perf_counter(), msg))

        lg = logging.getLogger("semsearch")
        lg.setLevel(logging.INFO)
        lg.addHandler(Grab())
        lg.propagate = False  # the events are counted into the results, not printed
        self.col = Collection.create(self.path, self.settings(), encoder=Enc())
        self.col.search("warm up", k=10, mode="hybrid")

    def close(self) -> None:
        self.col.close()

    def _doc(self, d: dict[str, Any], v: np.ndarray):
        from semsearch.documents import Document

        doc = Document(id=d["_id"], title=d["title"], text=d["text"], metadata={"bucket": d["bucket"]})
        self.lookup[self.template.format(title=doc.title, text=doc.text).strip()] = v
        return doc

    def add(self, d: dict[str, Any], v: np.ndarray, mode: str = "async") -> None:
        doc = self._doc(d, v)
        if mode == "wait_for":
            self.col.upsert([doc], wait_for=True)
        elif mode == "refresh":
            self.col.upsert([doc])
            self.col.refresh()
        else:
            self.col.upsert([doc])

    def visible(self, d: dict[str, Any]) -> bool:
        res = self.col.search(d["token"], k=10, mode="lexical", with_documents=False)
        return any(h.id == d["_id"] for h in res.hits)

    def hybrid(self, q: str, filt: dict | None = None) -> Any:
        flt = None if filt is None else ({"bucket": filt["eq"]} if "eq" in filt else {"bucket": {"lt": filt["lt"]}})
        return self.col.search(q, k=10, mode="hybrid", filters=flt).hits

    def stats(self) -> dict[str, Any]:
        st = self.col.stats()
        errors = [m for _, m in self.events if m.startswith("ERROR")]
        return {"segments": len(st["segments"]), "docs": st["documents"], "generation": st["generation"],
                "merge_errors_so_far": len(errors), "last_merge_error": repr(self.col.merge_error)
                if self.col.merge_error else None}

    def disk_mb(self) -> float:
        return dir_size_mb(self.path)


class LanceEngine(Engine):
    """LanceDB embedded: one table (id, body = title + text, bucket, vector); an
    IVF_HNSW_FLAT vector index (HNSW over full vectors, m=32, ef_construction=40 like FAISS
    HNSW32; one IVF partition up to 500k rows), a native FTS index on ``body`` and a bitmap
    index on ``bucket``. Hybrid = LanceDB's hybrid query (its default RRF reranker)."""

    name = "lancedb"

    def _table(self, chunk: list[dict[str, Any]], v: np.ndarray):
        import pyarrow as pa

        return pa.table({
            "id": [d["_id"] for d in chunk],
            "title": [d["title"] for d in chunk],
            "body": [f"{d['title']} {d['text']}" for d in chunk],
            "bucket": pa.array([d["bucket"] for d in chunk], pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v, np.float32).ravel()), DIM),
        })

    def ingest(self) -> dict[str, Any]:
        import lancedb

        db = lancedb.connect(str(self.path))
        took = 0.0
        tbl = None
        start = 0
        for chunk in chunks(self.n):
            data = self._table(chunk, self.vecs[start : start + len(chunk)])
            t = time.perf_counter()
            if tbl is None:
                tbl = db.create_table("docs", data)
            else:
                tbl.add(data)
            took += time.perf_counter() - t
            start += len(chunk)
            self.progress = (start, took)
            check_memory(start)
        write_s = took
        t = time.perf_counter()
        tbl.optimize()  # compact the appended fragments
        parts = 1 if self.n <= 500_000 else self.n // 250_000
        tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_HNSW_FLAT",
                         num_partitions=parts, m=32, ef_construction=40)
        tbl.create_fts_index("body")
        tbl.create_scalar_index("bucket", index_type="BITMAP")
        index_s = time.perf_counter() - t
        took += index_s
        return {"seconds": took, "write_s": write_s, "index_s": index_s, "vector_index": "IVF_HNSW_FLAT",
                "ivf_partitions": parts}

    def open(self) -> None:
        import lancedb

        self.tbl = lancedb.connect(str(self.path)).open_table("docs")
        self.hybrid("warm up")

    def close(self) -> None:
        pass

    def add(self, d: dict[str, Any], v: np.ndarray, mode: str = "async") -> None:
        self.tbl.add(self._table([d], v[None, :]))

    def visible(self, d: dict[str, Any]) -> bool:
        r = self.tbl.search(d["token"], query_type="fts").limit(10).select(["id"]).to_list()
        return any(h["id"] == d["_id"] for h in r)

    def hybrid(self, q: str, filt: dict | None = None) -> Any:
        qv = self.qenc.encode([q])[0]
        b = self.tbl.search(query_type="hybrid").vector(qv).text(q).ef(128).limit(10).select(["id", "title", "body"])
        if filt is not None:
            b = b.where(f"bucket = {filt['eq']}" if "eq" in filt else f"bucket < {filt['lt']}", prefilter=True)
        return b.to_list()

    def stats(self) -> dict[str, Any]:
        return {"version": self.tbl.version, "rows": self.tbl.count_rows()}

    def disk_mb(self) -> float:
        return dir_size_mb(self.path)


class MilvusEngine(Engine):
    """Milvus Lite: a collection (id, body with the English analyzer -> BM25 function ->
    sparse, dense FLOAT_VECTOR, bucket INT64); HNSW M=32 efConstruction=40 (IP), sparse
    inverted index (BM25). Hybrid = ``hybrid_search`` of both with its RRFRanker; filters
    as ``expr`` on each sub-request. Writes are searched with the default consistency."""

    name = "milvus"

    def _rows(self, chunk: list[dict[str, Any]], v: np.ndarray) -> list[dict[str, Any]]:
        return [{"id": d["_id"], "title": d["title"], "body": f"{d['title']} {d['text']}", "bucket": d["bucket"],
                 "dense": v[i].tolist()} for i, d in enumerate(chunk)]

    def ingest(self) -> dict[str, Any]:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        self.path.mkdir(parents=True, exist_ok=True)
        c = MilvusClient(str(self.path / "milvus.db"))
        s = c.create_schema(auto_id=False)
        s.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
        s.add_field("title", DataType.VARCHAR, max_length=4096)
        s.add_field("body", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                    analyzer_params=ANALYZER)
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
        s.add_field("bucket", DataType.INT64)
        s.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["body"],
                                output_field_names=["sparse"]))
        c.create_collection("docs", schema=s)
        took = 0.0
        start = 0
        for chunk in chunks(self.n):
            v = np.asarray(self.vecs[start : start + len(chunk)])
            rows = self._rows(chunk, v)
            t = time.perf_counter()
            for i in range(0, len(rows), 1000):
                c.insert("docs", rows[i : i + 1000])
            took += time.perf_counter() - t
            start += len(chunk)
            self.progress = (start, took)
            check_memory(start)
        write_s = took
        t = time.perf_counter()
        c.flush("docs")
        # one index per call, skipping any that exists: a run at 100k failed in one
        # create_index call with "index already exists for field 'dense'"
        specs = [("dense", {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 32, "efConstruction": 40}}),
                 ("sparse", {"index_type": "SPARSE_INVERTED_INDEX", "metric_type": "BM25"}),
                 ("bucket", {"index_type": "INVERTED"})]
        from pymilvus import MilvusException

        have = set(c.list_indexes("docs"))
        for field, spec in specs:
            if field in have:
                continue
            ip = c.prepare_index_params()
            ip.add_index(field, **spec)
            try:
                c.create_index("docs", ip)
            except MilvusException as e:
                # at 1M the first CreateIndex call blocked for 210 s, gRPC's keepalive dropped
                # the connection (GOAWAY too_many_pings) and pymilvus retried a call that had
                # gone through: "index already exists for field 'dense'"
                if "already exists" not in str(e):
                    raise
                print(f"[milvus] create_index({field}): retried after the first call went through", flush=True)
        while True:
            d = c.describe_index("docs", "dense")
            if d.get("pending_index_rows", 0) == 0 and d.get("state", "Finished") == "Finished":
                break
            time.sleep(0.5)
        c.load_collection("docs")
        index_s = time.perf_counter() - t
        took += index_s
        c.close()
        return {"seconds": took, "write_s": write_s, "index_s": index_s}

    def open(self) -> None:
        from pymilvus import MilvusClient

        self.c = MilvusClient(str(self.path / "milvus.db"))
        self.c.load_collection("docs")
        self.hybrid("warm up")

    def close(self) -> None:
        self.c.close()

    def add(self, d: dict[str, Any], v: np.ndarray, mode: str = "async") -> None:
        self.c.insert("docs", self._rows([d], v[None, :]))

    def visible(self, d: dict[str, Any]) -> bool:
        r = self.c.search("docs", [d["token"]], anns_field="sparse", limit=10, output_fields=["id"])
        return any(h["id"] == d["_id"] for h in r[0])

    def hybrid(self, q: str, filt: dict | None = None) -> Any:
        from pymilvus import AnnSearchRequest, RRFRanker

        qv = self.qenc.encode([q])[0].tolist()
        expr = None if filt is None else (f"bucket == {filt['eq']}" if "eq" in filt else f"bucket < {filt['lt']}")
        kw = {"expr": expr} if expr else {}
        reqs = [AnnSearchRequest([qv], "dense", {"metric_type": "IP", "params": {"ef": 128}}, 100, **kw),
                AnnSearchRequest([q], "sparse", {"metric_type": "BM25"}, 100, **kw)]
        return self.c.hybrid_search("docs", reqs, RRFRanker(), limit=10, output_fields=["id", "title", "body"])

    def stats(self) -> dict[str, Any]:
        return {"rows": self.c.get_collection_stats("docs").get("row_count")}

    def disk_mb(self) -> float:
        return dir_size_mb(self.path)


#: Milvus Lite knows no "english" analyzer type; this is the same chain spelled out
ANALYZER = {"tokenizer": "standard",
            "filter": ["lowercase", {"type": "stop", "stop_words": ["_english_"]}, {"type": "stemmer", "language": "english"}]}

ENGINE_CLASSES = {"semsearch": SemsearchEngine, "lancedb": LanceEngine, "milvus": MilvusEngine}


# -- one engine, in its own process ---------------------------------------------------------
def run_engine(args: argparse.Namespace) -> dict[str, Any]:
    from semsearch.config import Settings
    from semsearch.encoders import make_text_encoder

    EXTRA_TEXTS.extend(d["text"] for d in load_jsonl(require_scifact() / "corpus.jsonl")[:2000])
    vecs = np.load(args.cache / f"vectors-{args.docs}.npy", mmap_mode="r")
    qenc = make_text_encoder(Settings().text_encoder, for_queries=True)
    qenc.encode(["warm up"])
    _, queries, _ = load_queries("test")
    queries = queries[: args.queries]
    path = args.work / args.engine
    shutil.rmtree(path, ignore_errors=True)
    eng = ENGINE_CLASSES[args.engine](path, args.docs, vecs, qenc)
    out: dict[str, Any] = {"engine": args.engine, "query_encoder": f"{qenc.name} ({getattr(qenc, 'backend', type(qenc).__name__)})"}
    rss0 = rss_mb()
    print(f"[{args.engine}] ingest {args.docs} docs ...", flush=True)
    try:
        ing = eng.ingest()
    except MemoryCap as e:
        done, took = getattr(eng, "progress", (0, 0.0))
        out.update(error=f"stopped: {e}", docs_ingested=done,
                   write_docs_per_s_before_stop=round(done / took, 1) if took else None,
                   peak_rss_mb=peak_mb(), disk_mb=eng.disk_mb())
        print(f"[{args.engine}] {out['error']}", flush=True)
        shutil.rmtree(path, ignore_errors=True)
        return out
    ing["docs_per_s"] = args.docs / ing["seconds"]
    out["ingest"] = ing
    out["peak_rss_mb_ingest"] = peak_mb()
    out["disk_mb"] = eng.disk_mb()
    out["disk_mb_per_1m"] = out["disk_mb"] * 1e6 / args.docs
    print(f"[{args.engine}] ingest {ing['seconds']:.1f}s ({ing['docs_per_s']:.0f} docs/s), disk {out['disk_mb']:.0f} MB",
          flush=True)
    if args.ingest_only:
        out["peak_rss_mb"] = peak_mb()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
        return out
    eng.open()
    out["rss_mb_open"] = rss_mb()
    out["rss_mb_before_ingest"] = rss0

    # one-document writes until a search sees them
    modes = ["wait_for", "refresh"] if args.engine.startswith("semsearch") else ["add"]
    out["write_visible"] = {}
    for mode in modes:
        lat = []
        for i in range(args.writes):
            d, v = extra_doc(i if mode != "refresh" else 10_000 + i, vecs, "w" + mode[0])
            t = time.perf_counter()
            eng.add(d, v, mode)
            while not eng.visible(d):
                if time.perf_counter() - t > 30:
                    raise SystemExit(f"{args.engine}: document {d['_id']} not visible after 30 s")
            lat.append(time.perf_counter() - t)
            time.sleep(0.05)
        out["write_visible"][mode] = pct(lat)
        print(f"[{args.engine}] write->visible ({mode}) p50 {out['write_visible'][mode]['p50_ms']:.0f} ms "
              f"p95 {out['write_visible'][mode]['p95_ms']:.0f} ms", flush=True)
    if args.engine.startswith("semsearch"):
        time.sleep(2)  # let merges the writes triggered finish before the idle runs

    out["stats_at_idle"] = eng.stats()
    lat, _ = timed_queries(lambda q: eng.hybrid(q), queries, args.query_seconds)
    out["hybrid_idle"] = pct(lat)
    for name, f in (("filtered_1pct", {"eq": 7}), ("filtered_50pct", {"lt": 50})):
        lat, _ = timed_queries(lambda q, f=f: eng.hybrid(q, f), queries, args.query_seconds)
        out[name] = pct(lat)
    print(f"[{args.engine}] hybrid idle p50 {out['hybrid_idle']['p50_ms']:.0f} ms p95 {out['hybrid_idle']['p95_ms']:.0f} ms",
          flush=True)

    # hybrid while a writer adds args.writer_rate docs/s
    before = eng.stats()
    n_events = len(getattr(eng, "events", []))
    w = Writer(lambda d, v: eng.add(d, v), args.writer_rate, vecs)
    w.start()
    time.sleep(2)
    t_win = time.perf_counter()
    lat, spans = timed_queries(lambda q: eng.hybrid(q), queries * args.writer_rounds, args.writer_seconds)
    window_s = time.perf_counter() - t_win
    w.stop.set()
    w.join()
    if w.error is not None:
        out["writer_error"] = repr(w.error)
    during = pct(lat)
    during["window_s"] = round(window_s, 1)
    during["queries_planned"] = len(queries) * args.writer_rounds
    during["writer_docs"] = w.done
    during["writer_docs_per_s"] = round(w.done / w.seconds, 1)
    during["writer_call_ms"] = pct(w.lat)
    during["ratio_p95_vs_idle"] = round(during["p95_ms"] / out["hybrid_idle"]["p95_ms"], 2)
    during["stats_before"], during["stats_after"] = before, eng.stats()
    if args.engine.startswith("semsearch"):
        ev = eng.events[n_events:]
        merges = [(t, m) for t, m in ev if m.startswith("merged") and " in " in m and "segments" in m]
        during["refreshes"] = sum(m.startswith("refreshed") for _, m in ev)
        during["merge_errors"] = sum(m.startswith("ERROR") for _, m in ev)
        during["merges"] = [m for _, m in merges]
        # a merge logs when it ends; its start is end - seconds
        windows = []
        for t, m in merges:
            try:
                secs = float(m.rsplit(" in ", 1)[1].split()[0])
            except (IndexError, ValueError):
                secs = 0.0
            windows.append((t - secs, t))
        overl = [x for x, (a, b) in zip(lat, spans) if any(a < e and b > s for s, e in windows)]
        during["queries_overlapping_a_merge"] = len(overl)
        during["p95_ms_overlapping_a_merge"] = pct(overl).get("p95_ms") if overl else None
    out["hybrid_during_writes"] = during
    print(f"[{args.engine}] hybrid during writes p50 {during['p50_ms']:.0f} ms p95 {during['p95_ms']:.0f} ms "
          f"({during['writer_docs_per_s']} docs/s written)", flush=True)
    eng.close()
    out["peak_rss_mb"] = peak_mb()
    out["disk_mb_after_writes"] = eng.disk_mb()
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)
    return out


def wide_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in rows[0]:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(r.get(c, "")) for c in rows[0]])
    Console(width=200).print(t)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100, help="SciFact test queries per measurement")
    ap.add_argument("--writes", type=int, default=50, help="single-document writes timed to visibility")
    ap.add_argument("--writer-rate", type=float, default=50.0, help="docs/s the background writer adds")
    ap.add_argument("--writer-rounds", type=int, default=1, help="passes over the queries while writing")
    ap.add_argument("--writer-seconds", type=float, default=60.0,
                    help="longest measurement window while writing (stops early, queries done are reported)")
    ap.add_argument("--query-seconds", type=float, default=float("inf"),
                    help="longest idle and filtered measurement (stops early; the queries done are reported)")
    ap.add_argument("--max-rss-gb", type=float, default=20.0,
                    help="a peer whose resident memory passes this during ingest is stopped and reported")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/semsearch-bench-scale"))
    ap.add_argument("--work", type=Path, default=None, help="where indexes are built (default: under --cache)")
    ap.add_argument("--keep", action="store_true", help="keep the built indexes")
    ap.add_argument("--base-from-index", type=Path, default=None,
                    help="read the SciFact MiniLM vectors from this semsearch index of SciFact instead of encoding")
    ap.add_argument("--ingest-only", action="store_true",
                    help="measure bulk ingest, disk and RSS only (no merges after the load, no searches)")
    ap.add_argument("--no-merges", action="store_true",
                    help="semsearch: search the segments of the bulk load as they are (no merges after it, "
                         "no background merges): a quick look at a large size")
    ap.add_argument("--engine", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    args.work = args.work or args.cache / f"work-{args.docs}"
    args.work.mkdir(parents=True, exist_ok=True)

    if args.engine:
        global SKIP_MERGES, NO_BACKGROUND_MERGES, MAX_RSS_MB
        MAX_RSS_MB = args.max_rss_gb * 1024
        SKIP_MERGES = args.ingest_only or args.no_merges
        NO_BACKGROUND_MERGES = args.no_merges
        logging.basicConfig(level=logging.WARNING)
        # Milvus Lite's embedded server logs a traceback for every AllocTimestamp call it
        # does not implement (harmless: pymilvus falls back)
        logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        res = run_engine(args)
        args.out.write_text(json.dumps(res, indent=2))
        return

    t = time.perf_counter()
    vec_file = doc_vectors(args.docs, args.cache, args.base_from_index)
    prep_s = time.perf_counter() - t
    results: dict[str, Any] = {}
    load: dict[str, Any] = {"start": loadavg()}
    started = time.time()
    for name in args.engines.split(","):
        out = args.work / f"{name}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--engine", name, "--out", str(out), "--docs", str(args.docs),
               "--queries", str(args.queries), "--writes", str(args.writes), "--writer-rate", str(args.writer_rate),
               "--writer-rounds", str(args.writer_rounds), "--writer-seconds", str(args.writer_seconds),
               "--query-seconds", str(args.query_seconds), "--max-rss-gb", str(args.max_rss_gb), "--cache", str(args.cache), "--work", str(args.work)]
        if args.keep:
            cmd.append("--keep")
        if args.ingest_only:
            cmd.append("--ingest-only")
        if args.no_merges:
            cmd.append("--no-merges")
        t = time.perf_counter()
        rc = subprocess.call(cmd)
        if rc != 0 or not out.exists():
            results[name] = {"engine": name, "error": f"exit status {rc}"}
        else:
            results[name] = json.loads(out.read_text())
        results[name]["wall_s"] = round(time.perf_counter() - t, 1)
        load[f"after_{name}"] = loadavg()

    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append({"engine": name, "ingest docs/s": r["error"]})
            continue
        if "write_visible" not in r:
            rows.append({"engine": name, "ingest docs/s": round(r["ingest"]["docs_per_s"]),
                         "peak RSS MB": round(r["peak_rss_mb"]), "disk MB/1M": round(r["disk_mb_per_1m"])})
            continue
        wv = r["write_visible"]
        rows.append({
            "engine": name,
            "ingest docs/s": round(r["ingest"]["docs_per_s"]),
            "peak RSS MB": round(r["peak_rss_mb"]),
            "disk MB/1M": round(r["disk_mb_per_1m"]),
            "write->visible p50/p95 ms": " | ".join(f"{m}: {v['p50_ms']:.0f}/{v['p95_ms']:.0f}" for m, v in wv.items()),
            "hybrid p50/p95 ms": f"{r['hybrid_idle']['p50_ms']:.1f}/{r['hybrid_idle']['p95_ms']:.1f}",
            "+writer p50/p95 ms (x idle)": f"{r['hybrid_during_writes']['p50_ms']:.1f}/{r['hybrid_during_writes']['p95_ms']:.1f} "
                                          f"({r['hybrid_during_writes']['ratio_p95_vs_idle']}x)",
            "filter 1% p95": round(r["filtered_1pct"]["p95_ms"], 1),
            "filter 50% p95": round(r["filtered_50pct"]["p95_ms"], 1),
        })
    payload = {
        "docs": args.docs,
        "queries": args.queries,
        "command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]),
        "vectors": (f"all-MiniLM-L6-v2 vectors of the 5183 SciFact abstracts tiled + N(0, 0.02) noise, "
                    f"re-normalised, cached at {vec_file} (prepared in {prep_s:.0f}s, excluded); SciFact vectors "
                    + (f"read from the store of {args.base_from_index}" if args.base_from_index
                       else "encoded with sentence-transformers") + f" (cached at {args.cache / 'scifact-minilm.npy'})"),
        "load_average": load,
        "wall_s": round(time.time() - started, 1),
        "targets": {"write_visible_p95_ms": 1000, "hybrid_p95_ms": 50, "during_writes_ratio": 1.5,
                    "filtered_p95_ms": 60, "at_docs": 1_000_000},
        "results": results,
    }
    path = save(f"scale_{args.docs}" + ("_ingest" if args.ingest_only else "_nomerge" if args.no_merges else ""), payload)
    wide_table(rows, f"scale at {args.docs} docs, k=10, query encoding included, each engine in its own process")
    print(f"load average (1/5/15 min): {load}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
