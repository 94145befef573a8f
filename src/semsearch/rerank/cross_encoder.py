"""Reranker on ``sentence_transformers.CrossEncoder``: batched, CUDA half precision when
available, ONNX Runtime (optionally int8) on CPU."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semsearch.config import RerankSettings
from semsearch.documents import Document
from semsearch.errors import BadInput
from semsearch.rerank.fields import FieldLayout

logger = logging.getLogger(__name__)


def base_model_path() -> str:
    """The BERT backbone that training starts from: the bundled all-MiniLM-L6-v2."""
    from semsearch.encoders.sbert import default_model_path

    return default_model_path()


def load_cross_encoder(
    source: str | None,
    *,
    device: str = "cpu",
    max_length: int = 128,
    backend: str = "torch",
    onnx_file: str | None = None,
    precision: str = "fp32",
) -> Any:
    """A ``CrossEncoder`` from a trained directory / hub name, or a fresh 1-label head on the
    MiniLM backbone when ``source`` is None."""
    from sentence_transformers import CrossEncoder

    kwargs: dict[str, Any] = {"max_length": max_length}
    if source is None:
        source, kwargs["num_labels"] = base_model_path(), 1
    if backend == "onnx":
        if source is None:
            raise BadInput("the onnx rerank backend needs a trained model directory (rerank.model)")
        from semsearch.rerank.onnx import OnnxCrossEncoder

        return OnnxCrossEncoder(source, file_name=onnx_file or "model_int8.onnx", max_length=max_length)
    try:
        model = CrossEncoder(source, device=device, **kwargs)
    except OSError as e:
        raise BadInput(f"cross-encoder model {source!r} cannot be loaded: {e}") from e
    if device.startswith("cuda") and precision != "fp32" and backend == "torch":
        import torch

        model.to(torch.float16 if precision == "fp16" else torch.bfloat16)
    return model


def current_reranker(wanted: RerankSettings, loaded: Any, *, given: bool, missing: str) -> Any:
    """The reranker a searcher uses for the settings ``wanted``: ``loaded`` while the caller
    gave it or it is the model ``wanted`` names, else a new :class:`CrossEncoderReranker` (the
    index's defaults name another model: ``semsearch adapt`` recorded a new one).
    ``missing``: the error when no model is named."""
    if loaded is not None and (given or loaded.name == wanted.model):
        return loaded
    if not wanted.model:
        raise BadInput(missing)
    return CrossEncoderReranker(wanted)


class CrossEncoderReranker:
    """Scores documents for a query with a cross-encoder; the model loads lazily, once."""

    def __init__(self, settings: RerankSettings | None = None, *, model: Any = None) -> None:
        self.settings = settings or RerankSettings()
        self._model = model
        self._layout: FieldLayout | None = None
        self._lock = threading.Lock()
        #: Hugging Face fast tokenizers are not thread-safe (padding/truncation state is set per
        #: call), and the API scores from several worker threads: one inference at a time
        self._infer_lock = threading.Lock()
        #: the backend in use once the model is loaded ("torch" or "onnx"; "auto" resolved)
        self.backend: str | None = None

    @property
    def name(self) -> str:
        return self.settings.model or f"{base_model_path()} (untrained head)"

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from semsearch.encoders.sbert import resolve_device

                    s = self.settings
                    if s.model is not None and not Path(s.model).exists() and "/" not in s.model:
                        raise BadInput(f"rerank model {s.model!r} is not a directory")
                    device = resolve_device(s.device)
                    backend = s.backend
                    if backend == "auto":  # ONNX int8 for a trained model on CPU, else PyTorch
                        local = s.model is not None and (Path(s.model) / "config.json").exists()
                        backend = "onnx" if device == "cpu" and local else "torch"
                    kwargs = dict(device=device, max_length=s.max_length, onnx_file=s.onnx_file, precision=s.precision)
                    try:
                        self._model = load_cross_encoder(s.model, backend=backend, **kwargs)
                    except Exception as e:  # noqa: BLE001 - auto: any ONNX failure (export, runtime, corrupt file) falls back
                        if s.backend != "auto" or backend == "torch":
                            raise
                        logger.warning("ONNX reranking unavailable (%s); using PyTorch", e)
                        backend = "torch"
                        self._model = load_cross_encoder(s.model, backend=backend, **kwargs)
                    self.backend = backend
                    logger.info("loaded cross-encoder %s (%s on %s)", self.name, backend, device)
        return self._model

    @property
    def layout(self) -> FieldLayout:
        if self._layout is None:
            s = self.settings
            # the model's own limit (its position embeddings), not the tokenizer's
            # model_max_length, which CrossEncoder sets to max_length
            limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None) or 512
            self._layout = FieldLayout(
                self.model.tokenizer, max_length=s.max_length, fields=s.fields, separator=s.separator,
                extend=s.long_queries == "extend", model_max_length=int(limit),
            )
        return self._layout

    def score(self, query: str, documents: Sequence[Document]) -> list[float]:
        if not documents:
            return []
        with self._infer_lock:
            pairs, length = self.layout.pairs_and_length(query, documents)
            model = self.model
            # a long query's pairs are longer than max_length: let the model take them whole
            attr = "max_seq_length" if hasattr(model, "max_seq_length") else "max_length"
            usual = getattr(model, attr)
            if length > usual:
                setattr(model, attr, length)
            try:
                scores = model.predict(
                    pairs, batch_size=self.settings.batch_size, show_progress_bar=False, convert_to_numpy=True
                )
            finally:
                if length > usual:
                    setattr(model, attr, usual)
        return [float(x) for x in scores]
