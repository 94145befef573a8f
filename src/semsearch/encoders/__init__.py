"""Encoders turn text (and images) into L2-normalised float32 vectors."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from semsearch.encoders.base import TextEncoder

if TYPE_CHECKING:
    from semsearch.config import TextEncoderSettings

__all__ = ["TextEncoder", "make_text_encoder", "prepare_query_encoder"]


def make_text_encoder(settings: TextEncoderSettings, *, for_queries: bool = False) -> TextEncoder:
    """The configured text encoder: ``settings.backend`` for documents, ``settings.query_backend``
    for search queries (``for_queries``); nothing loads until it is first used."""
    backend = settings.query_backend if for_queries else settings.backend
    fallback = False
    if backend == "auto":
        from semsearch.encoders.sbert import resolve_device

        on_cpu = resolve_device(settings.device) == "cpu"
        fallback = on_cpu and importlib.util.find_spec("onnxruntime") is not None
        backend = "onnx" if fallback else "torch"
    if backend == "onnx":
        from semsearch.encoders.onnx import OnnxTextEncoder

        return OnnxTextEncoder(settings, fallback=fallback)
    from semsearch.encoders.sbert import SentenceTransformerEncoder

    return SentenceTransformerEncoder(settings)


def prepare_query_encoder(settings: TextEncoderSettings) -> None:
    """Do the one-off work of the query encoder now (the ONNX export, several seconds) rather
    than in the first search: ``semsearch index`` calls this after building an index."""
    prepare = getattr(make_text_encoder(settings, for_queries=True), "prepare", None)
    if prepare is not None:
        prepare()
