"""``semsearch adapt``: the steps, each saved under ``DIR/adapt/`` and skipped when re-run.

1. ``mine``      pseudo-queries (+ hard negatives) from the indexed documents; a held-out share
2. ``baseline``  the unadapted engine on the held-out share, judged trivially and informatively
3. ``dense``     fine-tune the bi-encoder, encode the corpus, keep it only if it wins held-out
4. ``fusion``    method, normalisation, weights and depth chosen on the held-out share
5. ``reranker``  (optional) stage 1 (+ stage 2 with qrels); enabled only if it wins held-out
6. ``apply``     record the choices in the index (re-encoding the dense channel if adapted)
7. ``report``    before/after in the eval report format (``DIR/adapt/report/``)

With the Elasticsearch store (``store.backend = "elasticsearch"``), the cluster's documents
are the input, and the steps' files go to a local working directory. Fusion's choice is
recorded in the store index's manifest, which every replica reads; a kept fine-tuned encoder
is published in the cluster and the documents re-encoded with it into a new index behind the
alias (:meth:`~semsearch.store_es.collection.ElasticsearchCollection.reencode`), so that every
replica fetches it and encodes queries with it. A reranker that wins held-out is published
in the cluster the same way and named in the manifest's search defaults, so that every replica
fetches and reranks with it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.adapt import heldout as H
from semsearch.adapt.dense import ADAPTED_DIR, DenseTrainConfig
from semsearch.adapt.fusion import score, select_fusion, single_channel_run
from semsearch.collection import Collection, open_directory
from semsearch.config import Settings
from semsearch.errors import BadInput
from semsearch.indexer.manifest import save_npy
from semsearch.rerank.train.stages import STAGE2_EPOCHS, STAGE2_NEGATIVES

logger = logging.getLogger(__name__)

WORKDIR = "adapt"
#: the fine-tuned encoder's vectors, cached under ``DIR/adapt/`` by the dense step and read
#: by ``apply`` (a passage index's passages, or one vector per document)
PASSAGES_CACHE, VECTORS_CACHE = "passages-adapted", "vectors-adapted"
STEPS = ["mine", "baseline", "dense", "fusion", "reranker", "apply", "report"]
DEPTH = 200  # deepest fusion depth in the grid


@dataclass
class AdaptOptions:
    sample: int = 2000
    dev: int = 300
    negatives: int = 1
    dense: bool = True
    dense_config: DenseTrainConfig = field(default_factory=DenseTrainConfig)
    reranker: bool = False
    reranker_max_pairs: int = 4000
    reranker_max_steps: int = -1
    #: stage 2 (judged qrels given): train-reranker's recipe unless set
    reranker_stage2_negatives: int = STAGE2_NEGATIVES
    reranker_stage2_epochs: float = STAGE2_EPOCHS
    queries: Path | None = None
    qrels: Path | None = None
    weak_pairs: Path | None = None
    judged_dev_fraction: float = 0.2
    seed: int = 0
    #: minimum held-out nDCG@10 gain for an adapted model to be kept (< 0: keep it whatever
    #: it scores, for tests)
    min_gain: float = 0.0
    #: and the gain must be significant: paired t-test p below this on the held-out queries
    keep_alpha: float = 0.05


class Adapter:
    """Adapts the local index at ``index_path`` (its steps under ``index_path/adapt``), or
    with the Elasticsearch store the store index, keeping the steps in the working directory
    ``index_path``."""

    def __init__(self, index_path: Path, settings: Settings, options: AdaptOptions,
                 *, say: Callable[[str], None] | None = None) -> None:
        from semsearch.indexer.manifest import read_manifest

        self.path = Path(index_path)
        self.settings = settings
        self.opt = options
        self.store_es = settings.store.backend == "elasticsearch"
        if self.store_es:
            with self.collection():
                pass  # the store index exists and matches the settings, before anything is written
        else:
            read_manifest(self.path)  # an index directory, before anything is written into it
        self.work = self.path if self.store_es else self.path / WORKDIR
        self.work.mkdir(parents=True, exist_ok=True)
        self.state_file = self.work / "state.json"
        self.state: dict[str, Any] = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.say = say or (lambda m: logger.info("%s", m))
        self._docs: list | None = None
        self._base_matrix: np.ndarray | None = None
        self._encoders: dict[str, Any] = {}

    # -- plumbing -----------------------------------------------------------------------
    def _save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        tmp.replace(self.state_file)

    def _step_options(self, step: str) -> dict[str, Any] | None:
        """The options a step's saved result depends on beyond the earlier steps' results (a
        re-run with other values re-runs it and every later step); None: no such option."""
        if step == "reranker":  # a trained stage's model is reused if it was trained as asked
            if self.opt.reranker and self.opt.qrels:
                return {"reranker": True, "stage2_negatives": self.opt.reranker_stage2_negatives,
                        "stage2_epochs": self.opt.reranker_stage2_epochs}
            return {"reranker": self.opt.reranker}
        return None

    def _recorded_options(self, step: str) -> dict[str, Any] | None:
        done = self.state[step]
        if "options" in done or step != "reranker":
            return done.get("options")
        # a state saved before options were recorded: whether a reranker was asked
        return {"reranker": done["result"].get("why") != "--no-reranker"}

    def run(self) -> dict[str, Any]:
        again = False  # a step ran again: every later step depends on its result
        self._ran: set[str] = set()  # the steps run by this call (not skipped)
        for step in STEPS:
            wanted = self._step_options(step)
            if step in self.state and not again:
                recorded = self._recorded_options(step)
                if recorded == wanted:
                    self.say(f"[{step}] done before ({self.state[step]['seconds']:.0f} s), skipped")
                    continue
                self.say(f"[{step}] done before with other options ({recorded}), again")
            again = again or step in self.state
            self.say(f"[{step}] ...")
            t0 = time.perf_counter()
            self._ran.add(step)
            result = getattr(self, f"step_{step}")()
            self.state[step] = {"seconds": round(time.perf_counter() - t0, 1), "result": result}
            if wanted is not None:
                self.state[step]["options"] = wanted
            self._save_state()
            self.say(f"[{step}] {self.state[step]['seconds']:.0f} s: {_brief(result)}")
        return self.state

    @property
    def target(self) -> str:
        """What is adapted, in words (the report's title)."""
        if self.store_es:
            return f"Elasticsearch store index {self.settings.store.elasticsearch.index!r} (steps in {self.path})"
        return str(self.path)

    def collection(self, *, writable: bool = False) -> Collection:
        """The index being adapted (the local directory, or the Elasticsearch store index)."""
        if self.store_es:
            return Collection.open(None, self.settings, writable=writable)
        if writable:
            return Collection.open(self.path, self.settings, writable=True)
        return open_directory(self.path, self.settings)

    @property
    def template(self) -> str:
        return self.settings.text_encoder.doc_template

    def docs(self) -> list:
        if self._docs is None:
            with self.collection() as col:
                self._docs = sorted(col.documents(), key=lambda d: d.id)
        return self._docs

    def encoder(self, model: str | None) -> Any:
        """A torch encoder of ``model`` (None: the configured base model)."""
        if model not in self._encoders:
            from semsearch.encoders.sbert import SentenceTransformerEncoder

            self._encoders[model] = SentenceTransformerEncoder(
                self.settings.text_encoder.model_copy(update={"model": model or self.settings.text_encoder.model}))
        return self._encoders[model]

    def _progress(self, step: str) -> Any:
        return lambda n, total: self.say(f"[{step}] encoded {n}/{total}")

    @functools.cached_property
    def plan(self) -> Any:
        """How the index splits long documents into passages for the dense channel (None:
        one vector per document)."""
        with self.collection() as col:
            return col.passage_plan("dense")

    def base_matrix(self) -> np.ndarray | list[np.ndarray]:
        """The dense vectors as indexed (base encoder), in :meth:`docs` order: one row per
        document, or for a channel of passages each document's passage vectors (so that
        held-out queries are judged on the channel as searches score it)."""
        if self._base_matrix is None:
            if self.plan is not None:
                self._base_matrix = self._base_passages()
            else:
                cache = self.work / "vectors-base.npy"
                if cache.exists():
                    self._base_matrix = np.load(cache)
                else:
                    with self.collection() as col:
                        self._base_matrix = col.vectors([d.id for d in self.docs()], "dense")
                    save_npy(cache, self._base_matrix)  # never a half-written cache
        return self._base_matrix

    def _base_passages(self) -> list[np.ndarray]:
        from semsearch.adapt.dense import encode_chunked

        with self.collection() as col:
            dim = col.vectors([], "dense").shape[1]  # (0, dim): the channel's dimension

            def read(part: list) -> tuple[np.ndarray, np.ndarray]:
                per = [m if m is not None and len(m) else np.zeros((1, dim), np.float32)
                       for m in col.passage_vectors([d.id for d in part], "dense")]
                return np.concatenate(per), np.array([len(m) for m in per], np.int64)

            got = encode_chunked(read, self.docs(), self.work / "passages-base")
        return got.by_document(got.vectors)

    def _aggregation(self) -> dict[str, Any]:
        ps = self.settings.text_encoder.passages
        return {"aggregation": ps.aggregation, "top_n": ps.top_n} if self.plan is not None else {}

    def examples(self, name: str) -> list:
        p = self.work / f"{name}.jsonl"
        return H.load_examples(p) if p.exists() else []

    # -- steps --------------------------------------------------------------------------
    def step_mine(self) -> dict[str, Any]:
        from semsearch.rerank.train.mining import (
            NegativeMiner,
            read_qrels,
            read_weak_pairs,
            split_dev,
        )

        with self.collection() as col:
            if "dense" not in col.channels:
                raise BadInput(f"index at {self.path} has no dense channel: adapt needs one")
            if self._already_adapted(col):
                raise BadInput(f"{self.target} is already adapted; re-index it to adapt again")
            train, dev = H.mine_split(self.docs(), sample=self.opt.sample + self.opt.dev, dev=self.opt.dev,
                                      seed=self.opt.seed)
            extra: dict[str, Any] = {}
            if self.opt.weak_pairs:
                weak = read_weak_pairs(self.opt.weak_pairs)
                train += weak
                extra["weak_pairs"] = len(weak)
            judged_train, judged_dev = [], []
            if self.opt.queries and self.opt.qrels:
                judged = read_qrels(self.opt.queries, self.opt.qrels)
                judged_train, judged_dev = split_dev(judged, self.opt.judged_dev_fraction, max_dev=len(judged),
                                                     seed=self.opt.seed)
            miner = NegativeMiner(col, fn_ratio=0.95, seed=self.opt.seed)
            if self.opt.dense or not self.store_es:  # they train the encoder and the reranker
                miner.mine(train, self.opt.negatives)
            if judged_train and (self.opt.dense or not self.store_es):
                NegativeMiner(col, fn_ratio=None, seed=self.opt.seed).mine(
                    judged_train, max(self.opt.negatives, 3))
        H.save_examples(self.work / "train.jsonl", train)
        if len(dev) < FEW_HELD_OUT and not judged_dev:
            self.say(f"[mine] only {len(dev)} held-out pseudo-queries from {len(self.docs())} documents: too few "
                     "to show a significant gain, so the defaults will most likely stay")
        H.save_examples(self.work / "dev.jsonl", dev)
        H.save_examples(self.work / "judged_train.jsonl", judged_train)
        H.save_examples(self.work / "judged_dev.jsonl", judged_dev)
        return {"train": len(train), "dev": len(dev), "judged_train": len(judged_train),
                "judged_dev": len(judged_dev), "false_negatives_dropped": miner.dropped_false_negatives,
                "title_queries": sum(1 for e in train + dev if not next(iter(e.positive_docs.values())).title)
                if train else 0, **extra}

    def _already_adapted(self, col: Any) -> bool:
        if self.store_es:
            from semsearch.store_es.models import is_ref

            return is_ref((col.manifest.get("dense") or {}).get("encoder"))
        from semsearch.indexer.manifest import read_manifest

        return bool(read_manifest(self.path).tuned.get("dense_encoder"))

    def copy(self, informative: bool, dev: list | None = None) -> H.HeldOutCopy:
        key = ("copy", informative, id(dev))
        if key not in self._encoders:
            self._encoders[key] = H.HeldOutCopy(self.docs(), self.examples("dev") if dev is None else dev,
                                                self.settings.lexical, informative=informative)
        return self._encoders[key]

    def channels(self, copy: H.HeldOutCopy, examples: list, model: str | None,
                 matrix: np.ndarray, depth: int = DEPTH) -> dict[str, Any]:
        enc = self.encoder(model)
        qs = [e.query for e in examples]
        mat = copy.dense_matrix(matrix, enc, self.template, self.plan)
        per = copy.channels(qs, enc.encode(qs), mat, depth, **self._aggregation())
        return {e.qid: ch for e, ch in zip(examples, per, strict=True)}

    def _default_fusion(self) -> dict[str, Any]:
        return self.settings.fusion.model_dump()

    def _evaluate(self, per_query: dict[str, Any], qrels: dict[str, Any], fusion: dict[str, Any]) -> dict[str, float]:
        from semsearch.eval.tune import _run

        return {"lexical": score(qrels, single_channel_run(per_query, "lexical")),
                "dense": score(qrels, single_channel_run(per_query, "dense")),
                "hybrid": score(qrels, _run(per_query, fusion["method"], fusion))}

    def step_baseline(self) -> dict[str, Any]:
        dev = self.examples("dev")
        qrels = H.qrels_of(dev)
        out = {}
        for informative in (False, True):
            per = self.channels(self.copy(informative), dev, None, self.base_matrix())
            out["informative" if informative else "trivial"] = self._evaluate(per, qrels, self._default_fusion())
            if informative:
                _save_json(self.work / "channels-base.json", per)
        judged = self.examples("judged_dev")
        if judged:
            per = self.channels(self.copy(False, []), judged, None, self.base_matrix())
            out["judged"] = self._evaluate(per, H.qrels_of(judged), self._default_fusion())
            _save_json(self.work / "channels-base-judged.json", per)
        return out

    def step_dense(self) -> dict[str, Any]:
        from semsearch.adapt.dense import MIN_PAIRS, encode_corpus, encode_passages, finetune
        from semsearch.encoders.sbert import default_model_path

        if not self.opt.dense:
            return {"kept": False, "why": "--no-dense"}
        out = self.path / ADAPTED_DIR
        train = self.examples("train") + self.examples("judged_train")
        if len(train) < MIN_PAIRS:  # a tiny corpus: nothing to learn from, the rest still runs
            return {"kept": False, "why": f"too few training pairs to fine-tune ({len(train)} mined from "
                                          f"{len(self.docs())} documents; needs {MIN_PAIRS})"}
        card_file = self.work / "dense-card.json"
        if not card_file.exists():
            with self.collection() as col:
                docs = col.get(sorted({d for e in train for d in (*e.positives, *e.negatives)}))
            card = finetune(self.settings.text_encoder.model or default_model_path(), train, docs, out,
                            template=self.template, config=self.opt.dense_config, say=self.say)
            _save_json(card_file, card)
        card = json.loads(card_file.read_text())
        enc = self.encoder(str(out.resolve()))
        self.say(f"[dense] encoding {len(self.docs())} documents with the fine-tuned encoder")
        if self.plan is not None:  # every passage, as apply re-encodes them (it reads this cache)
            matrix: Any = encode_passages(enc, self.docs(), self.template, self.plan,
                                          self.work / PASSAGES_CACHE, progress=self._progress("dense"))
        else:
            matrix = encode_corpus(enc, self.docs(), self.template, self.work / VECTORS_CACHE,
                                   progress=self._progress("dense"))
        dev = self.examples("dev")
        qrels = H.qrels_of(dev)
        per = self.channels(self.copy(True), dev, str(out.resolve()), matrix)
        _save_json(self.work / "channels-adapted.json", per)
        base_per = _load_json(self.work / "channels-base.json")
        base = score(qrels, single_channel_run(base_per, "dense"))
        adapted = score(qrels, single_channel_run(per, "dense"))
        res = {"base_dense": base, "adapted_dense": adapted, "train": card}
        judged = self.examples("judged_dev")
        if judged:
            jper = self.channels(self.copy(False, []), judged, str(out.resolve()), matrix)
            _save_json(self.work / "channels-adapted-judged.json", jper)
            jqrels = H.qrels_of(judged)
            jbase_run = single_channel_run(_load_json(self.work / "channels-base-judged.json"), "dense")
            jrun = single_channel_run(jper, "dense")
            res["judged_base_dense"] = score(jqrels, jbase_run)
            res["judged_adapted_dense"] = score(jqrels, jrun)
            res["pseudo_p_value"] = _paired_p(qrels, single_channel_run(base_per, "dense"),
                                              single_channel_run(per, "dense"))
            res.update(keep_decision(res["judged_base_dense"], res["judged_adapted_dense"],
                                     _paired_p(jqrels, jbase_run, jrun), min_gain=self.opt.min_gain,
                                     alpha=self.opt.keep_alpha))
            res["on"] = f"{len(judged)} held-out judged queries"
        else:
            res.update(keep_decision(base, adapted, _paired_p(qrels, single_channel_run(base_per, "dense"),
                                                              single_channel_run(per, "dense")),
                                     min_gain=self.opt.min_gain, alpha=self.opt.keep_alpha))
            res["on"] = f"{len(dev)} held-out pseudo-queries (informative judge)"
        res["why"] = (f"held-out dense nDCG@10 {base:.4f} (base) -> {adapted:.4f} (fine-tuned)"
                      + (f" (pseudo-queries, paired t-test p={res['pseudo_p_value']:.3f}, not the gate); "
                         f"judged dev {res['judged_base_dense']:.4f} -> {res['judged_adapted_dense']:.4f}"
                         if judged else "")
                      + f" (paired t-test p={res['p_value']:.3f} on the {res['on']})"
                      + (": kept" if res["kept"] else
                         f": not significantly better (alpha {self.opt.keep_alpha}), the base encoder stays"))
        if not res["kept"]:
            res["removed_mb"] = self._remove_rejected(out, card_file)
            res["why"] += f"; the fine-tuned model and its vectors were removed ({res['removed_mb']:.0f} MB)"
        return res

    def _remove_rejected(self, model: Path, card_file: Path) -> float:
        """Delete a fine-tuned encoder the gate refused, and its cached vectors: nothing searches
        with them, and they would ride along in every copy and snapshot of the index (90 MB
        for MiniLM). The card goes first: a run stopped half-way trains again on resume
        instead of finding a card without its model. Returns the megabytes freed."""
        import shutil

        from semsearch.indexer.index import dir_size

        card_file.unlink(missing_ok=True)
        paths = [model, model.parent / (model.name + ".checkpoints"),
                 self.work / PASSAGES_CACHE, self.work / VECTORS_CACHE]
        freed = sum(dir_size(p) for p in paths if p.exists())
        for p in paths:
            shutil.rmtree(p, ignore_errors=True)
        return freed / 1e6

    def _dense_kept(self) -> bool:
        return bool(self.state.get("dense", {}).get("result", {}).get("kept"))

    def _per_query(self, judged: bool = False) -> dict[str, Any]:
        which = "adapted" if self._dense_kept() else "base"
        return _load_json(self.work / f"channels-{which}{'-judged' if judged else ''}.json")

    def step_fusion(self) -> dict[str, Any]:
        judged = self.examples("judged_dev")
        if judged:  # real queries are better evidence than pseudo-queries
            res = select_fusion(self._per_query(True), H.qrels_of(judged), default=self._default_fusion(),
                                on="held-out judged queries")
            res["on"] = f"{len(judged)} held-out judged queries"
        else:
            res = select_fusion(self._per_query(), H.qrels_of(self.examples("dev")), default=self._default_fusion())
            res["on"] = f"{len(self.examples('dev'))} held-out pseudo-queries (informative judge)"
        res.pop("best", None)
        return res

    def step_reranker(self) -> dict[str, Any]:
        if not self.opt.reranker:
            return {"enabled": False, "why": "--no-reranker"}
        from semsearch.adapt.rerank import adapt_reranker

        return adapt_reranker(self)

    def tuned(self) -> dict[str, Any]:
        t: dict[str, Any] = {"fusion": self.state["fusion"]["result"]["chosen"], "by": "semsearch adapt",
                             "at": time.time()}
        if self._dense_kept() and not self.store_es:  # the store's manifest names it in ``dense``
            t["dense_encoder"] = ADAPTED_DIR
        rr = self.state.get("reranker", {}).get("result", {})
        if rr.get("enabled"):
            # the store publishes the folder in the cluster (set_tuned, reencode): its path here
            model = str((self.path / rr["model"]).resolve()) if self.store_es else rr["model"]
            t["rerank"] = {"enabled": True, "model": model, "blend": rr["blend"], "depth": rr["depth"]}
        return t

    def step_apply(self) -> dict[str, Any]:
        from semsearch.adapt.dense import encode_corpus, encode_passages

        tuned = self.tuned()
        kept = self._dense_kept()
        plan = self.plan if kept else None  # read before the writable open below
        with self.collection(writable=True) as col:
            model = str((self.path / ADAPTED_DIR).resolve())
            if kept and not self.store_es and "dense" not in self._ran \
                    and col.index.manifest.channels["dense"].encoder == col.index.record_encoder(model):
                # encoded with this fine-tune by an earlier apply (adapt run again, e.g. to add
                # a reranker): the defaults only (the store checks the model's digest itself)
                return {"tuned": col.set_tuned(tuned), "reencode": {"encoder": ADAPTED_DIR, "unchanged": True}}
            if kept:
                if plan is None:  # encoded by the dense step: read from its cache
                    matrix = encode_corpus(self.encoder(model), self.docs(), self.template,
                                           self.work / VECTORS_CACHE)
                else:
                    # a channel of passages: every passage again with the adapted encoder (the
                    # dense step's cache, which judged the held-out queries on them); cached
                    # chunk by chunk, so an interrupted apply resumes
                    self.say(f"[apply] encoding the passages of {len(self.docs())} documents with the fine-tuned encoder")
                    matrix = encode_passages(self.encoder(model), self.docs(), self.template, plan,
                                             self.work / PASSAGES_CACHE, progress=self._progress("apply"))
                ids = [d.id for d in self.docs()]
                if self.store_es:  # into a new index behind the alias, the models into the cluster
                    info = col.reencode(dict(zip(ids, _per_document(matrix))), model, tuned=tuned)
                    tuned = info.pop("tuned")
                else:
                    info = col.replace_vectors(ids, matrix, model, tuned=tuned)
            else:
                tuned = col.set_tuned(tuned)
                info = {}
        return {"tuned": tuned, "reencode": info}

    def step_report(self) -> dict[str, Any]:
        from semsearch.adapt.report import write_adapt_report

        return write_adapt_report(self)


#: fewer held-out pseudo-queries than this (a small corpus) and ``mine`` says the gates will
#: rarely let a change through
FEW_HELD_OUT = 50


def _per_document(matrix: Any) -> list[np.ndarray]:
    """One ``(n_passages, dim)`` matrix per document from an encoding of the corpus: a list
    of them already, or one row per document."""
    return list(matrix) if isinstance(matrix, list) else [row[None, :] for row in np.asarray(matrix)]


def keep_decision(base: float, adapted: float, p_value: float, *, min_gain: float = 0.0,
                  alpha: float = 0.05) -> dict[str, Any]:
    """Whether a fine-tuned encoder is kept: its held-out nDCG@10 gain over the base encoder
    must exceed ``min_gain`` with paired t-test ``p_value`` below ``alpha`` (``min_gain`` < 0:
    kept whatever it scores, for tests). The caller passes the held-out judged queries when the
    user gave qrels (real queries are better evidence than pseudo-queries, as for fusion), else
    the held-out pseudo-queries."""
    kept = adapted - base > min_gain and (min_gain < 0 or p_value < alpha)
    return {"kept": bool(kept), "gain": adapted - base, "p_value": p_value}


def _paired_p(qrels: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> float:
    """Two-sided paired t-test p-value of per-query nDCG@10 (1.0 when the runs are equal)."""
    from scipy import stats

    from semsearch.eval import metrics as M

    pa = M.per_query(qrels, a, ["ndcg@10"])["ndcg@10"]
    pb = M.per_query(qrels, b, ["ndcg@10"])["ndcg@10"]
    x = np.array([pa[q] for q in sorted(pa)])
    y = np.array([pb[q] for q in sorted(pa)])
    if len(x) < 2 or np.allclose(x, y):
        return 1.0  # nothing to test on (a t-test of one query is undefined)
    return float(stats.ttest_rel(x, y).pvalue)


def _save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, default=str))
    tmp.replace(path)


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _brief(result: dict[str, Any]) -> str:
    if "why" in result:
        return str(result["why"])
    return json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))} or result,
                      default=str)[:400]
