"""CLIP image and text embeddings with open_clip.

The model is a setting (:class:`~semsearch.config.ClipSettings`): an open_clip architecture
name (``ViT-B-32``) or the path of an open_clip model-config JSON (registered under its file
stem), plus ``pretrained``: a tag that open_clip downloads where there is internet
(``laion2b_s34b_b79k``), a local weights file, or None for random weights. Random weights
are seeded (torch seed 0 inside a forked RNG), so two processes build the same model: that
is what tests use to prove the plumbing without real weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.config import ClipSettings
from semsearch.encoders.base import l2_normalize
from semsearch.errors import BadInput, require

logger = logging.getLogger(__name__)


def _architecture(arch: str) -> str:
    """An architecture name; a JSON config path is registered with open_clip first."""
    open_clip = require("open_clip", "clip")
    p = Path(arch)
    if arch.endswith(".json"):
        if not p.is_file():
            raise BadInput(f"CLIP model config {arch} does not exist")
        open_clip.add_model_config(p)
        return p.stem
    if arch not in open_clip.list_models():
        raise BadInput(
            f"unknown open_clip architecture {arch!r}; use one of open_clip.list_models() "
            "(e.g. 'ViT-B-32') or the path of a model-config JSON"
        )
    return arch


class ClipEncoder:
    """An :class:`~semsearch.encoders.base.ImageEncoder` backed by open_clip."""

    def __init__(self, settings: ClipSettings | None = None) -> None:
        self.settings = settings or ClipSettings()
        torch = require("torch", "clip")
        open_clip = require("open_clip", "clip")
        s = self.settings
        self.arch = _architecture(s.architecture)
        dev = s.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = dev
        pretrained = s.pretrained
        if pretrained and (pretrained.endswith((".pt", ".bin", ".safetensors", ".pth")) or "/" in pretrained):
            if not Path(pretrained).is_file():
                raise BadInput(f"CLIP weights file {pretrained} does not exist")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch, pretrained=pretrained, device=dev
                )
        except RuntimeError as e:
            raise BadInput(f"cannot load CLIP {self.arch} with pretrained={pretrained!r}: {e}") from e
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        with torch.no_grad():
            probe = model.encode_text(self.tokenizer(["probe"]).to(dev))
        self._dim = int(probe.shape[-1])
        self._name = f"open_clip/{self.arch}/{Path(pretrained).name if pretrained else 'random-seed0'}"
        logger.info("loaded CLIP %s on %s (dim %d)", self._name, dev, self._dim)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def has_real_weights(self) -> bool:
        return self.settings.pretrained is not None

    def encode_tensors(self, batch: Any) -> np.ndarray:
        """Preprocessed image tensors ``(n, 3, H, W)`` -> normalised embeddings."""
        import torch

        with torch.no_grad():
            feats = self.model.encode_image(batch.to(self.device))
        return l2_normalize(feats.float().cpu().numpy())

    def encode_images(self, images: Sequence[Any], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self._dim), np.float32)
        bs = batch_size or self.settings.batch_size
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:  # preprocess off the main thread
            tensors = list(pool.map(self.preprocess, images))
        out = [self.encode_tensors(torch.stack(tensors[i : i + bs])) for i in range(0, len(tensors), bs)]
        return np.vstack(out)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self._dim), np.float32)
        bs = batch_size or self.settings.batch_size
        out = []
        for i in range(0, len(texts), bs):
            tokens = self.tokenizer(list(texts[i : i + bs])).to(self.device)
            with torch.no_grad():
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return l2_normalize(np.vstack(out))

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """The :class:`TextEncoder` face (text-to-image queries)."""
        return self.encode_texts(texts, batch_size=batch_size)
