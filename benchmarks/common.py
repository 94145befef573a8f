"""Shared helpers for the benchmark scripts: data paths, timing, JSON results, tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# beside the checkout (/work/main -> /work/shared) or beside a worktree's parent
# (/work/wt/<name> -> /work/shared)
_SHARED_DEFAULT = next((p / "shared" / "data" for p in (REPO.parent, REPO.parents[1]) if (p / "shared" / "data").is_dir()),
                       REPO.parent / "shared" / "data")
SHARED = Path(os.environ.get("SEMSEARCH_SHARED_DATA", _SHARED_DEFAULT))
SCIFACT = SHARED / "scifact"
#: where save() writes (SEMSEARCH_BENCH_RESULTS=benchmarks/results for figures to commit)
RESULTS = Path(os.environ.get("SEMSEARCH_BENCH_RESULTS", REPO / "bench-results"))
CACHE = Path(os.environ.get("SEMSEARCH_BENCH_CACHE", REPO / ".cache" / "bench"))


def require_scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        raise SystemExit(f"SciFact not found at {SCIFACT} (set SEMSEARCH_SHARED_DATA)")
    return SCIFACT


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_queries(split: str = "test") -> tuple[list[str], list[str], dict[str, dict[str, int]]]:
    import csv

    d = require_scifact()
    qrels: dict[str, dict[str, int]] = {}
    with open(d / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            qrels.setdefault(r["query-id"], {})[r["corpus-id"]] = int(r["score"])
    qs = {q["_id"]: q["text"] for q in load_jsonl(d / "queries.jsonl") if q["_id"] in qrels}
    ids = list(qs)
    return ids, [qs[i] for i in ids], qrels


def percentiles(samples_s: Iterable[float]) -> dict[str, float]:
    xs = sorted(samples_s)
    if not xs:
        return {}
    pick = lambda p: xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]  # noqa: E731
    return {
        "p50_ms": round(pick(50) * 1000, 3),
        "p95_ms": round(pick(95) * 1000, 3),
        "p99_ms": round(pick(99) * 1000, 3),
        "mean_ms": round(statistics.fmean(xs) * 1000, 3),
    }


def time_each(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[float]:
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    cols = list(rows[0]) if rows else []
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()])
    Console().print(t)


def synth_corpus(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` documents made from SciFact: each is a SciFact abstract (cycled) with a third of
    its words swapped for words drawn from the whole corpus, so term statistics stay
    realistic while documents differ. Deterministic for a seed."""
    import random

    base = load_jsonl(require_scifact() / "corpus.jsonl")
    vocab = [w for d in base for w in d["text"].split()]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        d = base[i % len(base)]
        if i < len(base):
            out.append({"_id": d["_id"], "title": d["title"], "text": d["text"]})
            continue
        words = d["text"].split()
        for j in range(len(words)):
            if rng.random() < 0.33:
                words[j] = rng.choice(vocab)
        out.append({"_id": f"{d['_id']}-v{i // len(base)}", "title": d["title"], "text": " ".join(words)})
    return out


def embedded_lexical(docs, batch: int = 50_000):  # noqa: ANN001, ANN201
    """The embedded lexical channel over ``docs`` (Documents): a lexical-only index in a
    temporary directory, written in batches and refreshed, whose snapshot's lexical reader
    (``search``, ``search_many``) is returned."""
    import tempfile

    from semsearch.config import Settings
    from semsearch.indexer.index import Index

    tmp = tempfile.mkdtemp(prefix="semsearch-bench-lex-")
    settings = Settings()
    settings.indexing.segment_docs = batch
    idx = Index.create(tmp, settings)
    for start in range(0, len(docs), batch):
        idx.write(docs[start : start + batch])
    idx.sync()
    return idx.snapshot().lexical


class CachedEncoder:
    """A text encoder that remembers every vector it computed, keyed by the text (sha1), in
    ``CACHE/<name>.npz``: a benchmark re-run (or another configuration over the same texts)
    encodes nothing twice. ``save()`` writes what is new; encoding saves every ``every``
    texts so an interrupted run keeps its work. The wrapped encoder's other attributes
    (name, dim, tokenizer spans, max length) are passed through."""

    def __init__(self, encoder, name: str, every: int = 2048) -> None:  # noqa: ANN001
        import numpy as np

        self._enc = encoder
        self._file = CACHE / f"{name}.npz"
        self._every = every
        self._new = 0
        self._vecs: dict[str, Any] = {}
        if self._file.exists():
            data = np.load(self._file)
            self._vecs = dict(zip(data["keys"].tolist(), data["vecs"]))
        self.encoded = 0  # texts this process had to encode

    def __getattr__(self, name: str) -> Any:
        return getattr(self._enc, name)

    @staticmethod
    def _key(text: str) -> str:
        import hashlib

        return hashlib.sha1(text.encode()).hexdigest()

    def encode(self, texts, *, batch_size=None):  # noqa: ANN001, ANN201
        import numpy as np

        keys = [self._key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self._vecs}.items())
        for start in range(0, len(todo), self._every):
            chunk = todo[start : start + self._every]
            vecs = self._enc.encode([t for _, t in chunk])
            self._vecs.update(zip([k for k, _ in chunk], vecs))
            self._new += len(chunk)
            self.encoded += len(chunk)
            self.save()
        if not keys:
            return np.zeros((0, self._enc.dim), np.float32)
        return np.ascontiguousarray(np.stack([self._vecs[k] for k in keys]), dtype=np.float32)

    def save(self) -> None:
        import numpy as np

        if not self._new:
            return
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_name(self._file.stem + ".tmp.npz")
        keys = list(self._vecs)
        np.savez(tmp, keys=np.array(keys), vecs=np.stack([self._vecs[k] for k in keys]))
        os.replace(tmp, self._file)
        self._new = 0
