"""Run evaluation configurations over an index and collect runs, metrics and latencies."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.collection import Collection, SearchRequest, open_directory
from semsearch.config import Settings
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BackendUnavailable, BadInput
from semsearch.eval import metrics as M
from semsearch.eval.configs import EvalConfig, unavailable
from semsearch.eval.datasets import EvalDataset, Run

logger = logging.getLogger(__name__)

#: how many results each configuration retrieves per query (the metrics' deepest cut-off)
RUN_DEPTH = 100
#: how many queries are searched one at a time to measure latency
LATENCY_QUERIES = 100


@dataclass
class IndexInfo:
    path: str
    reused: bool
    build_seconds: float | None
    documents: int
    channels: dict[str, str]
    lexical_backend: str
    #: judged documents of the split that the index does not hold (a wrong --index shows here)
    missing_judged: int = 0


@dataclass
class EvalResult:
    dataset: EvalDataset
    configs: list[EvalConfig]
    index: IndexInfo
    baseline: str
    runs: dict[str, Run] = field(default_factory=dict)
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    means: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    recall_curve: dict[str, dict[int, float]] = field(default_factory=dict)
    significance: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None
    stat_test: str = "student"
    alpha: float = 0.05
    #: other indexes whose configs were run too (``config[NAME]``), by name
    compared: dict[str, IndexInfo] = field(default_factory=dict)

    @property
    def evaluated(self) -> list[EvalConfig]:
        return [c for c in self.configs if c.name in self.runs]


# -- index --------------------------------------------------------------------------------
def index_info(col: Collection, *, reused: bool, build_seconds: float | None = None) -> IndexInfo:
    """What a report says about the index it ran on."""
    stats = col.stats()
    return IndexInfo(  # the Elasticsearch store has no path, and is its own lexical backend
        path=str(col.path or col.location), reused=reused, build_seconds=build_seconds,
        documents=stats["documents"], channels={n: c.get("encoder", n) for n, c in stats["channels"].items()},
        lexical_backend=stats.get("lexical", stats)["backend"],
    )


def ensure_index(dataset: EvalDataset, path: Path, settings: Settings,
                 encoder: TextEncoder | None = None) -> tuple[Collection, IndexInfo]:
    """Open the index at ``path`` (read-only) if it exists, else build it from the dataset's
    corpus first. ``encoder`` (or the configured model) also encodes the queries. With the
    Elasticsearch store, ``path`` is not used: the store index is evaluated, and created from
    the corpus first if its alias does not exist."""
    if settings.store.backend == "elasticsearch":
        col, info = _ensure_store(dataset, settings, encoder)
        return col, _check_judged(col, info, dataset, col.location)  # type: ignore[attr-defined]
    path = Path(path)
    build_seconds: float | None = None
    reused = (path / "manifest.json").exists()
    if not reused:
        if dataset.kind != "beir":
            raise BadInput(
                f"cannot build an index for caption set {dataset.path} here: build it with the "
                "image indexer and pass --index DIR (caption-to-image eval needs an 'image' channel)"
            )
        from semsearch.collection import Collection
        from semsearch.indexer.pipeline import TextChannel

        if encoder is None:
            from semsearch.encoders import make_text_encoder

            encoder = make_text_encoder(settings.text_encoder)
        t0 = time.perf_counter()
        with Collection.create(path, settings, encoder=encoder) as col:
            te = settings.text_encoder
            report = col.bulk_index(dataset.corpus_files, [TextChannel(encoder, te.doc_template, passages=te.passages)])
        build_seconds = time.perf_counter() - t0
        if report.rejected:
            logger.warning("%d corpus records were rejected while indexing", len(report.rejected))
    col = open_directory(path, settings, encoder=encoder)
    info = index_info(col, reused=reused, build_seconds=build_seconds)
    return col, _check_judged(col, info, dataset, f"the index at {path}")


def _check_judged(col: Collection, info: IndexInfo, dataset: EvalDataset, where: str) -> IndexInfo:
    """Count (and warn of) the judged documents the index does not hold."""
    judged = sorted({d for rels in dataset.qrels.values() for d in rels})
    info.missing_judged = len(judged) - len(col.get(judged))
    if info.missing_judged:
        logger.warning("%d of %d judged documents are not in %s", info.missing_judged, len(judged), where)
    return info


def _ensure_store(dataset: EvalDataset, settings: Settings,
                  encoder: TextEncoder | None) -> tuple[Collection, IndexInfo]:
    from semsearch.errors import IndexNotFound
    from semsearch.store_es import ElasticsearchCollection
    from semsearch.store_es.ingest import ingest

    build_seconds: float | None = None
    try:
        col = ElasticsearchCollection.open(settings, encoder=encoder)
    except IndexNotFound:
        if dataset.kind != "beir":
            raise BadInput(f"cannot build the store index for caption set {dataset.path} here: index the images "
                           "with `semsearch index` first") from None
        t0 = time.perf_counter()
        with ElasticsearchCollection.create(settings, encoder=encoder) as w:
            w.ready()  # an unreachable or red cluster fails before anything is encoded
            report = ingest(w, dataset.corpus_files, settings)
        build_seconds = time.perf_counter() - t0
        if report["rejected"]:
            logger.warning("%d corpus records were rejected while indexing", len(report["rejected"]))
        col = ElasticsearchCollection.open(settings, encoder=encoder)
    return col, index_info(col, reused=build_seconds is None, build_seconds=build_seconds)  # type: ignore[arg-type,return-value]


# -- running ------------------------------------------------------------------------------
class _EsLexical:
    """A separate Elasticsearch lexical index of the same documents, for the ``lexical-es``
    config (built once per evaluation through the LexicalIndex protocol)."""

    def __init__(self, col: Collection, settings: Settings, dataset: str) -> None:
        import re

        from semsearch.indexer.lexical import create_lexical

        lex_settings = settings.lexical.model_copy(deep=True)
        lex_settings.backend = "elasticsearch"
        # a dedicated index name, so evaluation never writes into the user's own index
        suffix = re.sub(r"[^a-z0-9_-]+", "-", dataset.lower())
        lex_settings.elasticsearch.index = f"{lex_settings.elasticsearch.index}-eval-{suffix}"
        self.lex = create_lexical(lex_settings)
        docs = list(col.documents())
        for i in range(0, len(docs), 1000):
            self.lex.upsert(docs[i : i + 1000])
        self.lex.commit()

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        return self.lex.search(query, k)


def latency_percentiles(times: list[float]) -> dict[str, float | None]:
    """p50/p95/mean in ms; None (not measured) when no query was timed (``latency_queries=0``)."""
    if not times:
        return {"p50": None, "p95": None, "mean": None, "queries": 0}
    a = np.asarray(times) * 1000
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "queries": len(times)}


class _MemoEncoder:
    """Encodes each distinct query once per evaluation (the dense and hybrid configs share
    query vectors); latency is measured separately, with the real encoder."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Any, *, batch_size: int | None = None) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            self._cache.update(zip(todo, self.inner.encode(todo, batch_size=batch_size), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else self.inner.encode(texts)


def _search(col: Collection, cfg: EvalConfig, texts: list[str], k: int,
            es: _EsLexical | None) -> list[list[tuple[str, float]]]:
    if es is not None:
        return [es.search(t, k) for t in texts]
    opts = {"k": k, "with_documents": False, "rerank": cfg.rerank, **cfg.search_kwargs()}
    results = col.search_batch([SearchRequest(query=t, **opts) for t in texts])
    return [[(h.id, h.score) for h in res.hits] for res in results]


def run_config(col: Collection, cfg: EvalConfig, queries: dict[str, str], *, k: int = RUN_DEPTH,
               es: _EsLexical | None = None, batch: int = 256,
               timing: Collection | None = None, latency_queries: int = LATENCY_QUERIES) -> tuple[Run, dict[str, float]]:
    """The run (queries searched in batches) and the latency of single queries: the first
    ``latency_queries`` queries searched one at a time with ``timing`` (query encoding,
    channels, fusion and reranking included, as a user sees it)."""
    qids, texts = list(queries), list(queries.values())
    ranked: list[list[tuple[str, float]]] = []
    for start in range(0, len(texts), batch):
        ranked.extend(_search(col, cfg, texts[start : start + batch], k, es))
    run: Run = {}
    for qid, hits in zip(qids, ranked, strict=True):
        d: dict[str, float] = {}
        for doc, score in hits:
            d.setdefault(doc, float(score))
        run[qid] = d
    times: list[float] = []
    for text in texts[:latency_queries]:
        t0 = time.perf_counter()
        _search(timing or col, cfg, [text], k, es)
        times.append(time.perf_counter() - t0)
    return run, latency_percentiles(times)


def evaluate(
    dataset: EvalDataset,
    col: Collection,
    index_info: IndexInfo,
    configs: list[EvalConfig],
    settings: Settings,
    *,
    reranker: Any = None,  # a Reranker, or {name: Reranker} for named +rerank:NAME configs
    baseline: str | None = None,
    stat_test: str = "student",
    alpha: float = 0.05,
    tuning: dict[str, Any] | None = None,
    on_config: Any = None,
    latency_queries: int = LATENCY_QUERIES,
    compare_runs: bool = True,
) -> EvalResult:
    """Run ``configs`` over ``col`` and compare them. Searches use the collection's encoder
    and settings; ``settings`` decides which configs can run (and the ``lexical-es`` index).
    ``compare_runs=False`` leaves the significance tests to a later :func:`compare` (when
    the runs of other indexes are added first)."""
    from semsearch.search import engine

    rerankers = reranker if isinstance(reranker, dict) else ({"": reranker} if reranker is not None else {})
    channels = set(index_info.channels)  # what ensure_index read from the collection
    memo = _MemoEncoder(col.encoder) if "dense" in channels else None
    collections: dict[str | None, tuple[Collection, Collection]] = {}

    def collections_for(cfg: EvalConfig) -> tuple[Collection, Collection]:
        """(batch, timing) collections with the config's reranker; one pair per reranker."""
        key = cfg.reranker if cfg.rerank else None
        if key not in collections:
            rr = rerankers.get(key) if key is not None else None
            t = col if rr is None else col.with_models(reranker=rr)
            b = col.with_models(encoder=memo, reranker=rr) if memo is not None else t
            collections[key] = (b, t)
        return collections[key]

    result = EvalResult(dataset, configs, index_info, baseline="", tuning=tuning,
                        stat_test=stat_test, alpha=alpha)
    modes = set(engine.MODES)
    es = None
    for cfg in configs:
        why = unavailable(cfg, settings=settings, channels=channels, modes=modes,
                          rerankers=set(rerankers))
        if why:
            logger.info("skipping %s: %s", cfg.name, why)
            result.skipped[cfg.name] = why
            continue
        if cfg.lexical_backend == "elasticsearch" and es is None:
            try:
                es = _EsLexical(col, settings, dataset.name)
            except BackendUnavailable as e:
                logger.warning("skipping %s: %s", cfg.name, e)
                result.skipped[cfg.name] = str(e)
                continue
        batch_col, timing_col = collections_for(cfg)
        run, lat = run_config(batch_col, cfg, dataset.queries, timing=timing_col,
                              es=es if cfg.lexical_backend == "elasticsearch" else None,
                              latency_queries=latency_queries)
        result.runs[cfg.name] = run
        result.latency_ms[cfg.name] = lat
        pq = M.per_query(dataset.qrels, run)
        result.per_query[cfg.name] = pq
        result.means[cfg.name] = M.means(pq)
        result.recall_curve[cfg.name] = M.recall_curve(dataset.qrels, run)
        if on_config:
            on_config(cfg, result.means[cfg.name], lat)
    if not result.runs:
        raise BadInput("no eval config could run here: " + "; ".join(f"{n}: {w}" for n, w in result.skipped.items()))
    if compare_runs:
        compare(result, baseline)
    return result


def compare(result: EvalResult, baseline: str | None = None) -> None:
    """Choose the baseline (default: the first config run) and test every run against it."""
    names = list(result.runs)
    if baseline is not None and baseline not in result.runs:
        raise BadInput(f"baseline {baseline!r} was not run (ran: {names})")
    result.baseline = baseline or names[0]
    result.significance = M.significance(result.dataset.qrels, result.runs, result.baseline,
                                         test=result.stat_test, alpha=result.alpha)


def compared_name(config: str, index: str) -> str:
    """The name a config run over the compared index ``index`` is reported under."""
    return f"{config}[{index}]"


def add_compared(result: EvalResult, name: str, other: EvalResult) -> None:
    """Add the runs of ``other`` (the same configs over another index of the same corpus,
    e.g. the index before ``semsearch adapt``) to ``result`` as ``config[name]``; call
    :func:`compare` afterwards to test them against the baseline too."""
    from dataclasses import replace

    def renamed(n: str) -> str:
        return compared_name(n, name)

    result.compared[name] = other.index
    result.configs += [replace(c, name=renamed(c.name)) for c in other.evaluated]
    for mine, theirs in ((result.runs, other.runs), (result.per_query, other.per_query),
                         (result.means, other.means), (result.latency_ms, other.latency_ms),
                         (result.recall_curve, other.recall_curve)):
        mine.update({renamed(n): v for n, v in theirs.items()})
    result.skipped.update({renamed(n): why for n, why in other.skipped.items()})
