"""Image channels for the bulk :class:`~semsearch.indexer.pipeline.Pipeline`.

* ``image``: CLIP embeddings (float, the ``faiss`` backend);
* ``phash``, ``dhash``: 64-bit perceptual hashes (8 bytes, the ``faiss-binary`` backend);
* ``phash_mirror``: the pHash of the mirrored image (flip-robust dedup).

A file that cannot be used is returned as a failure ``(doc, reason)``, which the Pipeline
reports as a rejected record while the run goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semsearch.config import Settings
from semsearch.documents import Document
from semsearch.images import hashing
from semsearch.images.batch import ImageBatchLoader, Prepared, result_or_error
from semsearch.indexer.pipeline import EncoderChannel

HASH_VERSION = "v1"


def _reason(err: Exception) -> str:
    kind = getattr(err, "kind", "unreadable")
    return f"[{kind}] {err}"


class ClipImageChannel(EncoderChannel):
    name = "image"

    def __init__(self, encoder, loader: ImageBatchLoader) -> None:  # noqa: ANN001 - ClipEncoder
        super().__init__(encoder)
        self.loader = loader

    def applies(self, doc: Document) -> bool:
        return doc.image is not None

    def encode(self, docs: Sequence[Document]) -> tuple[np.ndarray, list[tuple[Document, str]]]:
        import torch

        futs = self.loader.futures(docs)
        bs = self.encoder.settings.batch_size
        rows: list[np.ndarray] = []
        bad: list[tuple[Document, str]] = []
        for s in range(0, len(docs), bs):  # later sub-batches keep decoding meanwhile
            tensors = []
            for d, f in zip(docs[s : s + bs], futs[s : s + bs], strict=False):
                r = result_or_error(f)
                if isinstance(r, Prepared):
                    tensors.append(r.clip)
                    r.clip = None
                else:
                    bad.append((d, _reason(r)))
            if tensors:
                rows.append(self.encoder.encode_tensors(torch.stack(tensors)))
        mat = np.vstack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return mat, bad


class HashChannel:
    backend = "faiss-binary"
    dim = hashing.HASH_BYTES

    def __init__(self, kind: str, loader: ImageBatchLoader, *, mirrored: bool = False) -> None:
        self.kind = kind
        self.mirrored = mirrored
        self.name = f"{kind}_mirror" if mirrored else kind
        self.loader = loader

    @property
    def encoder_name(self) -> str:
        return f"{self.name}-64/{HASH_VERSION}"

    def applies(self, doc: Document) -> bool:
        return doc.image is not None

    def encode(self, docs: Sequence[Document]) -> tuple[np.ndarray, list[tuple[Document, str]]]:
        inputs, bad = [], []
        for d, r in zip(docs, self.loader.prepared(docs), strict=True):
            if isinstance(r, Prepared):
                inputs.append(r.hashes)
            else:
                bad.append((d, _reason(r)))
        return hashing.compute(self.kind, inputs, mirrored=self.mirrored), bad


def image_channels(settings: Settings, *, roots: Sequence | None = None, clip: bool = True,
                   clip_encoder: object | None = None) -> list:
    """The channels for image documents: CLIP (when ``clip``; ``clip_encoder`` if given, else
    a new ``ClipEncoder``), the hashes, the mirror."""
    enc: Any = None
    if clip:
        from semsearch.encoders.clip import ClipEncoder

        enc = clip_encoder or ClipEncoder(settings.clip)
    loader = ImageBatchLoader(settings.images, roots=roots, clip_preprocess=enc.preprocess if enc else None)
    chans: list = [ClipImageChannel(enc, loader)] if enc is not None else []
    chans += [HashChannel(k, loader) for k in settings.images.hashes]
    if settings.images.mirrored and "phash" in settings.images.hashes:
        chans.append(HashChannel("phash", loader, mirrored=True))
    return chans


def encode_documents(channels: Sequence, docs: Sequence[Document],
                     lock: Any) -> dict[str, tuple[np.ndarray, list[Document]]]:
    """Per channel, the vectors of the image documents ``docs`` and the documents they belong
    to, encoded one channel at a time under ``lock`` (the channels share a loader). A file that
    cannot be used rejects the whole batch: :class:`BadInput` names each document and problem."""
    from semsearch.errors import BadInput

    out: dict[str, tuple[np.ndarray, list[Document]]] = {}
    problems: dict[str, str] = {}
    for ch in channels:
        with lock:
            mat, bad = ch.encode(docs)
        for d, reason in bad:
            problems.setdefault(d.id, reason)
        out[ch.name] = (mat, [d for d in docs if d.id not in {b.id for b, _ in bad}])
    if problems:
        listed = "; ".join(f"document {i!r}: {r}" for i, r in list(problems.items())[:20])
        raise BadInput(f"{len(problems)} image(s) cannot be used, nothing was written: {listed}")
    return out


def close_channels(channels: Sequence) -> None:
    """Stop the image loaders of ``channels`` (their worker threads, and numpy's BLAS
    thread limit they hold while open); each shared loader once."""
    seen: set[int] = set()
    for ch in channels:
        loader = getattr(ch, "loader", None)
        if loader is not None and id(loader) not in seen:
            seen.add(id(loader))
            loader.close()
