"""One call that does what ``semsearch eval`` does: load, index, tune, run, report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from semsearch.config import Settings
from semsearch.encoders.base import TextEncoder
from semsearch.errors import BackendUnavailable, BadInput
from semsearch.eval import repro
from semsearch.eval.configs import DEFAULT_CAPTION_CONFIGS, DEFAULT_TEXT_CONFIGS, resolve_configs
from semsearch.eval.datasets import load_dataset
from semsearch.eval.report import write_report
from semsearch.eval.runner import (
    EvalResult,
    add_compared,
    compare,
    compared_name,
    ensure_index,
    evaluate,
)

logger = logging.getLogger(__name__)


@dataclass
class EvalOutcome:
    result: EvalResult
    paths: dict[str, Path]


def load_reranker(path: Path, settings: Settings) -> Any:
    """The cross-encoder at ``path`` (a ``semsearch train-reranker`` output or any
    sentence-transformers cross-encoder directory), with the rerank settings."""
    if not Path(path).exists():
        raise BadInput(f"reranker {path} does not exist")
    try:
        from semsearch.rerank.cross_encoder import CrossEncoderReranker
    except ImportError as e:  # pragma: no cover - the rerank package ships with semsearch
        raise BackendUnavailable(f"--reranker {path}: this semsearch has no reranker: {e}") from e
    return CrossEncoderReranker(settings.rerank.model_copy(update={"model": str(path)}))


def _name_ok(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_.+" for c in name)


def parse_compared(specs: list[Path | str] | None) -> dict[str, Path]:
    """``--compare-index NAME=DIR`` values: other indexes of the dataset's corpus whose
    configs are run too and reported as ``config[NAME]`` (e.g. ``base=DIR`` before adapt)."""
    out: dict[str, Path] = {}
    for spec in specs or []:
        name, sep, path = str(spec).partition("=")
        if not sep or not _name_ok(name) or not path:
            raise BadInput(f"--compare-index {spec!r}: give NAME=DIR (NAME of letters, digits, "
                           "'-', '_', '.' or '+')")
        if name in out:
            raise BadInput(f"--compare-index {spec!r}: the name {name!r} is given twice")
        if not (Path(path) / "manifest.json").exists():
            raise BadInput(f"--compare-index {spec!r}: {path} is not an index (no manifest.json); "
                           "compared indexes are read, never built")
        out[name] = Path(path)
    return out


def parse_rerankers(specs: Path | str | list[Path | str] | None) -> dict[str, Path]:
    """``--reranker`` values: one ``DIR`` (configs ``X+rerank``) or several ``NAME=DIR``
    (configs ``X+rerank:NAME``, an ablation of rerankers in one report)."""
    if specs is None:
        return {}
    items = [specs] if isinstance(specs, (str, Path)) else list(specs)
    out: dict[str, Path] = {}
    for spec in items:
        name, sep, path = str(spec).partition("=")
        if not sep:
            name, path = "", str(spec)
        elif not _name_ok(name):
            raise BadInput(f"--reranker {spec!r}: NAME in NAME=DIR must be letters, digits, '-', '_', '.' or '+'")
        if name in out:
            raise BadInput(f"--reranker {spec!r}: the name {name or '(unnamed)'!r} is given twice")
        out[name] = Path(path)
    if "" in out and len(out) > 1:
        raise BadInput("several --reranker values: name each one (--reranker NAME=DIR)")
    return out


def run_eval(
    dataset_dir: Path,
    split: str,
    out: Path,
    settings: Settings,
    *,
    configs: list[str] | None = None,
    index_dir: Path | None = None,
    tune_on: str | None = None,
    reranker: Path | str | list[Path | str] | None = None,
    baseline: str | None = None,
    stat_test: str = "student",
    alpha: float = 0.05,
    encoder: TextEncoder | None = None,
    command: str | None = None,
    on_config: Any = None,
    latency_queries: int = 100,
    compare_index: list[Path | str] | None = None,
) -> EvalOutcome:
    if tune_on is not None and tune_on == split:
        raise BadInput(f"--tune-on {tune_on!r} is the split being reported: tune on another split (e.g. train)")
    if settings.store.backend == "elasticsearch" and (tune_on or compare_index):
        raise BadInput(("--tune-on" if tune_on else "--compare-index") + " works with local indexes; with "
                       "SEMSEARCH_STORE__BACKEND=elasticsearch eval reports on the store index only")
    dataset = load_dataset(dataset_dir, split)
    names = configs or (DEFAULT_CAPTION_CONFIGS if dataset.kind == "captions" else DEFAULT_TEXT_CONFIGS)
    rr_paths = parse_rerankers(reranker)
    rr = {name: load_reranker(p, settings) for name, p in rr_paths.items()}
    cfgs = resolve_configs(names, settings, rerankers=list(rr))
    others = parse_compared(compare_index)
    col, info = ensure_index(dataset, index_dir or Path(out) / "index", settings, encoder)
    try:
        tuning = None
        if tune_on:
            from semsearch.eval.tune import tune_fusion, tuned_configs

            if "dense" not in info.channels:
                raise BadInput("--tune-on tunes hybrid fusion, but the index has no dense channel")
            train = load_dataset(dataset_dir, tune_on)
            tuning = tune_fusion(col, train)
            cfgs += tuned_configs(tuning)
        result = evaluate(dataset, col, info, cfgs, settings, reranker=rr or None,
                          baseline=baseline, stat_test=stat_test, alpha=alpha, tuning=tuning,
                          on_config=on_config, latency_queries=latency_queries,
                          compare_runs=not others)
    finally:
        col.close()
    for name, path in others.items():
        # the other index's own encoder and tuned defaults (an adapted index searches with its
        # fine-tuned encoder and fusion), the same configs and rerankers
        other_col, other_info = ensure_index(dataset, path, settings)
        try:
            other = evaluate(dataset, other_col, other_info, cfgs, settings, reranker=rr or None,
                             stat_test=stat_test, alpha=alpha, latency_queries=latency_queries,
                             compare_runs=False,
                             on_config=(lambda c, m, lat, n=name: on_config(
                                 replace(c, name=compared_name(c.name, n)), m, lat)) if on_config else None)
        finally:
            other_col.close()
        add_compared(result, name, other)
    if others:
        compare(result, baseline)
    paths = write_report(
        result, Path(out), settings=repro.settings_dump(settings), versions=repro.versions(),
        models=repro.models(info.channels, settings, {n: str(p) for n, p in rr_paths.items()}),
        command=command or repro.command_line(),
    )
    return EvalOutcome(result, paths)
