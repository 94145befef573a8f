"""Evaluation configurations: a name, the search parameters it runs with, and what it needs.

The list is extensible: add an entry to :data:`CONFIGS` (a name and a factory from settings
to an :class:`EvalConfig`). A config whose needs are not met (no Elasticsearch configured, no
image channel in the index, no reranker given) is skipped and the report says why.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from semsearch.config import Settings
from semsearch.errors import BadInput

RERANK_SUFFIX = "+rerank"


@dataclass(frozen=True)
class EvalConfig:
    name: str
    mode: str
    fusion: str | None = None
    weights: dict[str, float] | None = None
    rrf_k: int | None = None
    normalization: str | None = None
    depth: int | None = None
    #: "elasticsearch": query a separate Elasticsearch lexical index of the same documents
    lexical_backend: str | None = None
    #: None: the index's own default (``Manifest.tuned``, else the settings), as a search
    #: that does not say
    rerank: bool | None = False
    #: which reranker (a ``--reranker NAME=DIR`` name; "" = the only, unnamed one)
    reranker: str = ""
    #: where the parameters came from ("settings", "tuned on train", ...)
    origin: str = "settings"
    extra: dict[str, Any] = field(default_factory=dict)

    def search_kwargs(self) -> dict[str, Any]:
        kw = {"mode": self.mode, "fusion": self.fusion, "weights": self.weights,
              "rrf_k": self.rrf_k, "normalization": self.normalization, "depth": self.depth}
        return {k: v for k, v in kw.items() if v is not None}

    def describe(self) -> dict[str, Any]:
        d = {"mode": self.mode, **self.search_kwargs(), "origin": self.origin}
        if self.lexical_backend:
            d["lexical_backend"] = self.lexical_backend
        if self.rerank:
            d["rerank"] = self.reranker or True
        elif self.rerank is None:
            d["rerank"] = "the index's default"
        return d


def _hybrid(name: str, s: Settings, fusion: str, **kw: Any) -> EvalConfig:
    fs = s.fusion
    return EvalConfig(
        name, "hybrid", fusion=fusion, weights=dict(fs.weights), depth=fs.depth,
        rrf_k=fs.rrf_k if fusion == "rrf" else None,
        normalization=kw.get("normalization", fs.normalization) if fusion == "convex" else None,
    )


#: name -> factory; the order here is the order in reports
CONFIGS: dict[str, Callable[[Settings], EvalConfig]] = {
    "lexical": lambda s: EvalConfig("lexical", "lexical"),
    "lexical-es": lambda s: EvalConfig("lexical-es", "lexical", lexical_backend="elasticsearch"),
    "dense": lambda s: EvalConfig("dense", "dense"),
    # the default search: hybrid with whatever fusion the settings choose
    "hybrid": lambda s: EvalConfig("hybrid", "hybrid", fusion=s.fusion.method, weights=dict(s.fusion.weights),
                                   depth=s.fusion.depth),
    # hybrid with the index's own defaults (what `semsearch adapt` recorded in its manifest,
    # else the settings): no fusion or rerank parameters are passed, the Searcher fills them in
    "hybrid-index": lambda s: EvalConfig("hybrid-index", "hybrid", rerank=None,
                                         origin="the index's defaults (Manifest.tuned)"),
    "hybrid-rrf": lambda s: _hybrid("hybrid-rrf", s, "rrf"),
    "hybrid-convex": lambda s: _hybrid("hybrid-convex", s, "convex"),
    "hybrid-convex-minmax": lambda s: _hybrid("hybrid-convex-minmax", s, "convex", normalization="minmax"),
    "hybrid-convex-zscore": lambda s: _hybrid("hybrid-convex-zscore", s, "convex", normalization="zscore"),
    "image-by-text": lambda s: EvalConfig("image-by-text", "image"),
}

DEFAULT_TEXT_CONFIGS = ["lexical", "lexical-es", "dense", "hybrid-rrf", "hybrid-convex"]
DEFAULT_CAPTION_CONFIGS = ["image-by-text"]


def rerank_suffix(reranker: str) -> str:
    """``+rerank`` for the unnamed reranker, ``+rerank:NAME`` for a named one."""
    return RERANK_SUFFIX + (f":{reranker}" if reranker else "")


def resolve_configs(names: list[str], settings: Settings, *, rerank: bool = False,
                    rerankers: list[str] | None = None) -> list[EvalConfig]:
    """Configs by name; every config also gets a ``+rerank`` variant with ``rerank``, or one
    ``+rerank:NAME`` variant per name in ``rerankers`` (an ablation of several rerankers).
    A name may itself end in ``+rerank`` or ``+rerank:NAME``."""
    variants = list(rerankers) if rerankers is not None else ([""] if rerank else [])
    wanted = {n.strip() for n in names}
    out: list[EvalConfig] = []
    for raw in names:
        name = raw.strip()
        base, sep, which = name.partition(RERANK_SUFFIX)
        if base not in CONFIGS or (sep and which and not which.startswith(":")):
            raise BadInput(f"unknown eval config {name!r}; known: {', '.join(CONFIGS)} "
                           f"(each may end in {RERANK_SUFFIX} or {RERANK_SUFFIX}:NAME)")
        cfg = CONFIGS[base](settings)
        if sep:
            out.append(replace(cfg, name=name, rerank=True, reranker=which.removeprefix(":")))
            continue
        out.append(cfg)
        for r in variants:
            if name + rerank_suffix(r) not in wanted:
                out.append(replace(cfg, name=name + rerank_suffix(r), rerank=True, reranker=r))
    if not out:
        raise BadInput("no eval configs given")
    return out


def unavailable(cfg: EvalConfig, *, settings: Settings, channels: set[str], modes: set[str],
                rerankers: set[str]) -> str | None:
    """Why ``cfg`` cannot run here, or None when it can. ``rerankers``: the names of the
    rerankers given ("" = the only, unnamed one)."""
    if cfg.lexical_backend == "elasticsearch":
        es_url_set = "url" in settings.lexical.elasticsearch.model_fields_set
        if settings.lexical.backend != "elasticsearch" and not es_url_set:
            return ("Elasticsearch is not configured (set SEMSEARCH_LEXICAL__ELASTICSEARCH__URL, "
                    "or SEMSEARCH_LEXICAL__BACKEND=elasticsearch)")
        if importlib.util.find_spec("semsearch.indexer.lexical.elasticsearch") is None:
            return "this semsearch has no Elasticsearch lexical backend (semsearch.indexer.lexical.elasticsearch)"
        if importlib.util.find_spec("elasticsearch") is None:
            return "the elasticsearch client is not installed: pip install 'semsearch[es]'"
    if cfg.mode not in modes:
        return f"this semsearch's Searcher has no mode {cfg.mode!r} (it has {sorted(modes)})"
    needed = {"dense": {"dense"}, "hybrid": {"dense"}, "image": {"image"}}.get(cfg.mode, set())
    missing = needed - channels
    if missing:
        return f"the index has no {', '.join(sorted(missing))} channel (it has {sorted(channels) or 'none'})"
    if cfg.rerank and not rerankers:
        return "no reranker given (--reranker DIR)"
    if cfg.rerank and cfg.reranker not in rerankers:
        given = ", ".join(sorted(n or "(unnamed)" for n in rerankers))
        return f"no reranker named {cfg.reranker or '(unnamed)'!r} given (--reranker NAME=DIR; given: {given})"
    return None
